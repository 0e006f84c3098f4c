# The AWS IoT Jobs reference device program (AWSIoTPythonSDK v1), copied verbatim from the
# seed's "Actualización de Software - IoT Jobs" page. It differs from the seed in exactly these
# lines, so that the same program runs against Flotilla and against AWS IoT Core:
# - `import os`, to read the settings below from the environment.
# - The endpoint and port come from FLOTILLA_MQTT_HOST / FLOTILLA_MQTT_PORT (default
#   127.0.0.1:18830, where `flotilla serve --iot local` listens) instead of "YOUR_ENDPOINT", 8883.
# - `configureCredentials` is called only when FLOTILLA_ROOT_CA, FLOTILLA_PRIVATE_KEY and
#   FLOTILLA_CERTIFICATE name the files: without them the SDK connects over plain TCP, which is
#   what Flotilla's local development listener speaks (AWS IoT Core always needs them).
# Everything else (thing name, topics, QoS, the job logic, waiting on stdin) is the seed's.

#device.py - Demonstrates device perspective of a job agent on device waiting for a job and executing it

import AWSIoTPythonSDK
import json
import os
from AWSIoTPythonSDK.MQTTLib import AWSIoTMQTTClient
import urllib.request

#initialize the MQTT client
myMQTTClient = AWSIoTMQTTClient("iot-jobs-thing")
myMQTTClient.configureEndpoint(os.environ.get("FLOTILLA_MQTT_HOST", "127.0.0.1"), int(os.environ.get("FLOTILLA_MQTT_PORT", "18830")))
if os.environ.get("FLOTILLA_ROOT_CA"):
    myMQTTClient.configureCredentials(os.environ["FLOTILLA_ROOT_CA"], os.environ["FLOTILLA_PRIVATE_KEY"], os.environ["FLOTILLA_CERTIFICATE"])
myMQTTClient.connect()

print("Client Connected")

#function to handle jobs
def executeJob(client, userdata, message):
  
    jobfile = json.loads(message.payload.decode('utf-8;'))

    if 'execution' in jobfile:
        job_id = jobfile['execution']['jobId']
            
        job_update_topic = "$aws/things/iot-jobs-thing/jobs/"+ job_id + "/update"

        #publish status update to IoT Core jobs service 
        myMQTTClient.publish(job_update_topic, json.dumps({ "status" : "IN_PROGRESS"}),0)
        print ("Job Execution Started")
            
        #execute job based on parameters in job document
        try:
            url = jobfile['execution']['jobDocument']['files']['url']
            urllib.request.urlretrieve(url, jobfile['execution']['jobDocument']['directory'])
                
            #if successful, publish completion update to jobs service
            myMQTTClient.publish(job_update_topic, json.dumps({ "status" : "SUCCEEDED"}),0)

        except:
            #if failed, publish failure message to job service. Can optimize here.
            myMQTTClient.publish(job_update_topic, json.dumps({ "status" : "FAILED"}),0)

#listen for pending jobs
myMQTTClient.subscribe("$aws/things/iot-jobs-thing/jobs/notify-next", 1, executeJob)

print("Device waiting for job")

input("Please enter to close the connection")

myMQTTClient.disconnect()
print("Client Disconnected")
