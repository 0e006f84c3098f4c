# A device program on the AWS IoT Device SDK for Python v2 (awsiotsdk), connecting with mutual
# TLS as AWS IoT Core devices do: `mqtt_connection_builder.mtls_from_path` with the thing's
# certificate and key and the CA that signed the broker's certificate. It waits for the next job
# on `notify-next`, reports IN_PROGRESS and then SUCCEEDED on the job's `update` topic, and prints
# each step so the test can follow it.
#
# Settings (environment): FLOTILLA_MQTT_HOST, FLOTILLA_MQTT_PORT, FLOTILLA_THING,
# FLOTILLA_ROOT_CA, FLOTILLA_PRIVATE_KEY, FLOTILLA_CERTIFICATE.

import json
import os
import sys
import threading

from awscrt import mqtt
from awsiot import mqtt_connection_builder

thing = os.environ["FLOTILLA_THING"]
connection = mqtt_connection_builder.mtls_from_path(
    endpoint=os.environ["FLOTILLA_MQTT_HOST"],
    port=int(os.environ["FLOTILLA_MQTT_PORT"]),
    cert_filepath=os.environ["FLOTILLA_CERTIFICATE"],
    pri_key_filepath=os.environ["FLOTILLA_PRIVATE_KEY"],
    ca_filepath=os.environ["FLOTILLA_ROOT_CA"],
    client_id=thing,
    clean_session=True,
    keep_alive_secs=30,
)
try:
    connection.connect().result(timeout=20)
except Exception as error:  # the test reads this line to tell a refusal from a crash
    print("Connection refused: {}".format(error))
    sys.exit(2)
print("Client Connected")

done = threading.Event()
prefix = "$aws/things/{}/jobs".format(thing)


def on_update_accepted(topic, payload, **kwargs):
    print("Update accepted: {}".format(topic))
    if json.loads(payload).get("clientToken") == "succeeded":
        done.set()


def on_notify_next(topic, payload, **kwargs):
    message = json.loads(payload)
    if "execution" not in message:
        return
    job_id = message["execution"]["jobId"]
    print("Job Execution Started: {}".format(job_id))
    update = "{}/{}/update".format(prefix, job_id)
    connection.publish(update, json.dumps({"status": "IN_PROGRESS", "clientToken": "started"}), mqtt.QoS.AT_LEAST_ONCE)
    connection.publish(update, json.dumps({"status": "SUCCEEDED", "clientToken": "succeeded"}), mqtt.QoS.AT_LEAST_ONCE)


subscribed, _ = connection.subscribe("{}/+/update/accepted".format(prefix), mqtt.QoS.AT_LEAST_ONCE, on_update_accepted)
subscribed.result(timeout=20)
subscribed, _ = connection.subscribe("{}/notify-next".format(prefix), mqtt.QoS.AT_LEAST_ONCE, on_notify_next)
subscribed.result(timeout=20)
print("Device waiting for job")

if done.wait(timeout=60):
    print("Job Succeeded")
connection.disconnect().result(timeout=20)
print("Client Disconnected")
