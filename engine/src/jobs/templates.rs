//! Job templates: the account's own (CreateJobTemplate and friends, kept in PostgreSQL) and the
//! AWS managed templates (`AWS-Reboot`, `AWS-Download-File`, …), built in with the documents
//! and parameters AWS publishes, so a job created from `arn:aws:iot:{region}::jobtemplate/AWS-Reboot:1.0`
//! means the same here as on AWS.
//!
//! A managed template's document holds `${aws:iot:parameter:<key>}` placeholders; CreateJob's
//! `documentParameters` fill them ([`substitute_parameters`]). The job keeps the template's
//! document and the parameters, so GetJobDocument can return it before or after substitution.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde_json::{Map, Value};

use super::job_config::JobConfig;
use super::{ErrorKind, Jobs, MAX_DOCUMENT_BYTES, PageToken, Result, ServiceError};
use crate::model::valid_job_id;

/// One input of a managed template, as DescribeManagedJobTemplate reports it.
#[derive(Debug)]
pub struct DocumentParameter {
    pub key: &'static str,
    pub description: &'static str,
    /// The whole value must match (AWS's `regex` member; our patterns, anchored).
    pub regex: &'static str,
    pub example: &'static str,
    pub optional: bool,
    /// The longest value accepted, in characters (kept out of the pattern, where a bounded
    /// repetition of a Unicode class would compile to a huge automaton).
    pub max_chars: usize,
}

/// An AWS managed job template.
#[derive(Debug)]
pub struct ManagedTemplate {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub environments: &'static [&'static str],
    pub parameters: &'static [DocumentParameter],
    pub document: &'static str,
}

/// The two optional inputs every managed template has.
const RUN_AS_USER: DocumentParameter = DocumentParameter {
    key: "runAsUser",
    description: "The user the job handler runs as; empty runs it as the agent's user.",
    regex: "^[^\\p{C}]*$",
    example: "root",
    optional: true,
    max_chars: 256,
};
const PATH_TO_HANDLER: DocumentParameter = DocumentParameter {
    key: "pathToHandler",
    description: "The folder on the device holding the job handler; empty uses the agent's default.",
    regex: "^[^\\p{C}]*$",
    example: "/opt/flotilla/handlers",
    optional: true,
    max_chars: 4096,
};
const PACKAGES: DocumentParameter = DocumentParameter {
    key: "packages",
    description: "A space-separated list of one or more packages.",
    regex: "^[a-zA-Z0-9][a-zA-Z0-9_.+:~=-]*( [a-zA-Z0-9][a-zA-Z0-9_.+:~=-]*)*$",
    example: "curl nginx",
    optional: false,
    max_chars: 1024,
};
const SERVICES: DocumentParameter = DocumentParameter {
    key: "services",
    description: "A space-separated list of one or more services.",
    regex: "^[a-zA-Z0-9][a-zA-Z0-9_.@:-]*( [a-zA-Z0-9][a-zA-Z0-9_.@:-]*)*$",
    example: "nginx ssh",
    optional: false,
    max_chars: 1024,
};

/// A `runHandler` document of the AWS IoT Device Client schema, as the managed templates
/// spell it; `args` is the JSON list of arguments (placeholders included).
macro_rules! run_handler_document {
    ($name:literal, $handler:literal, $args:literal) => {
        concat!(
            "{\n  \"version\": \"1.0\",\n  \"steps\": [\n    {\n      \"action\": {\n",
            "        \"name\": \"",
            $name,
            "\",\n        \"type\": \"runHandler\",\n        \"input\": {\n",
            "          \"handler\": \"",
            $handler,
            "\",\n",
            $args,
            "          \"path\": \"${aws:iot:parameter:pathToHandler}\"\n        },\n",
            "        \"runAsUser\": \"${aws:iot:parameter:runAsUser}\"\n      }\n    }\n  ]\n}"
        )
    };
}

/// The managed templates, with the documents AWS publishes for version 1.0.
pub static MANAGED_TEMPLATES: [ManagedTemplate; 8] = [
    ManagedTemplate {
        name: "AWS-Reboot",
        version: "1.0",
        description: "A managed template provided by AWS for rebooting your device.",
        environments: &["LINUX"],
        parameters: &[RUN_AS_USER, PATH_TO_HANDLER],
        document: run_handler_document!("Reboot", "reboot.sh", ""),
    },
    ManagedTemplate {
        name: "AWS-Download-File",
        version: "1.0",
        description: "A managed template provided by AWS for downloading a file.",
        environments: &["LINUX"],
        parameters: &[
            DocumentParameter {
                key: "downloadUrl",
                description: "The URL to download the file from.",
                regex: "^https?://[^\\s]+$",
                example: "https://example.com/firmware.bin",
                optional: false,
                max_chars: 2000,
            },
            DocumentParameter {
                key: "filePath",
                description: "Where on the device to store the downloaded file.",
                regex: "^[^\\p{C}]+$",
                example: "/tmp/firmware.bin",
                optional: false,
                max_chars: 4096,
            },
            RUN_AS_USER,
            PATH_TO_HANDLER,
        ],
        document: run_handler_document!(
            "Download-File",
            "download-file.sh",
            "          \"args\": [\n            \"${aws:iot:parameter:downloadUrl}\",\n            \"${aws:iot:parameter:filePath}\"\n          ],\n"
        ),
    },
    ManagedTemplate {
        name: "AWS-Install-Application",
        version: "1.0",
        description: "A managed template provided by AWS for installing one or more applications.",
        environments: &["LINUX"],
        parameters: &[PACKAGES, RUN_AS_USER, PATH_TO_HANDLER],
        document: run_handler_document!(
            "Install-Application",
            "install-packages.sh",
            "          \"args\": [\n            \"${aws:iot:parameter:packages}\"\n          ],\n"
        ),
    },
    ManagedTemplate {
        name: "AWS-Remove-Application",
        version: "1.0",
        description: "A managed template provided by AWS for uninstalling one or more applications.",
        environments: &["LINUX"],
        parameters: &[PACKAGES, RUN_AS_USER, PATH_TO_HANDLER],
        document: run_handler_document!(
            "Remove-Application",
            "remove-packages.sh",
            "          \"args\": [\n            \"${aws:iot:parameter:packages}\"\n          ],\n"
        ),
    },
    ManagedTemplate {
        name: "AWS-Start-Application",
        version: "1.0",
        description: "A managed template provided by AWS for starting one or more services.",
        environments: &["LINUX"],
        parameters: &[SERVICES, RUN_AS_USER, PATH_TO_HANDLER],
        document: run_handler_document!(
            "Start-Application",
            "start-services.sh",
            "          \"args\": [\n            \"${aws:iot:parameter:services}\"\n          ],\n"
        ),
    },
    ManagedTemplate {
        name: "AWS-Stop-Application",
        version: "1.0",
        description: "A managed template provided by AWS for stopping one or more services.",
        environments: &["LINUX"],
        parameters: &[SERVICES, RUN_AS_USER, PATH_TO_HANDLER],
        document: run_handler_document!(
            "Stop-Application",
            "stop-services.sh",
            "          \"args\": [\n            \"${aws:iot:parameter:services}\"\n          ],\n"
        ),
    },
    ManagedTemplate {
        name: "AWS-Restart-Application",
        version: "1.0",
        description: "A managed template provided by AWS for stopping and restarting one or more services.",
        environments: &["LINUX"],
        parameters: &[SERVICES, RUN_AS_USER, PATH_TO_HANDLER],
        document: run_handler_document!(
            "Restart-Application",
            "restart-services.sh",
            "          \"args\": [\n            \"${aws:iot:parameter:services}\"\n          ],\n"
        ),
    },
    ManagedTemplate {
        name: "AWS-Run-Command",
        version: "1.0",
        description: "A managed template provided by AWS for running a shell command.",
        environments: &["LINUX"],
        parameters: &[
            DocumentParameter {
                key: "command",
                description: "A command and its arguments, separated by commas.",
                regex: "^[^\\p{C}]+$",
                example: "echo,hello",
                optional: false,
                max_chars: 4096,
            },
            RUN_AS_USER,
        ],
        document: "{\n  \"version\": \"1.0\",\n  \"steps\": [\n    {\n      \"action\": {\n        \"name\": \"Run-Command\",\n        \"type\": \"runCommand\",\n        \"input\": {\n          \"command\": \"${aws:iot:parameter:command}\"\n        },\n        \"runAsUser\": \"${aws:iot:parameter:runAsUser}\"\n      }\n    }\n  ]\n}",
    },
];

/// The managed template `name`, at `version` if given (only 1.0 exists).
pub fn managed_template(name: &str, version: Option<&str>) -> Option<&'static ManagedTemplate> {
    MANAGED_TEMPLATES
        .iter()
        .find(|t| t.name == name && version.is_none_or(|v| v == t.version))
}

/// What a `jobTemplateArn` names.
#[derive(Debug, Clone)]
pub enum TemplateRef {
    /// `arn:aws:iot:{region}::jobtemplate/{name}:{version}` (no account: AWS owns it).
    Managed(&'static ManagedTemplate),
    /// `arn:aws:iot:{region}:{account}:jobtemplate/{id}`.
    Custom(String),
}

/// Fills a managed template's `${aws:iot:parameter:<key>}` placeholders with `values`.
///
/// Every value is checked against its parameter's pattern; required parameters must be given,
/// optional ones left out become empty strings; unknown keys are refused. Values are inserted
/// JSON-escaped, because every placeholder sits inside a JSON string of the document.
pub fn substitute_parameters(
    template: &ManagedTemplate,
    values: &BTreeMap<String, String>,
) -> Result<String> {
    if let Some(unknown) = values
        .keys()
        .find(|key| !template.parameters.iter().any(|p| p.key == key.as_str()))
    {
        return Err(ServiceError::invalid(format!(
            "documentParameters: {} has no parameter {unknown:?}",
            template.name
        )));
    }
    let mut escaped_values = BTreeMap::new();
    for parameter in template.parameters {
        let value = match values.get(parameter.key) {
            Some(value) => {
                if !parameter_pattern(parameter).is_match(value) {
                    return Err(ServiceError::invalid(format!(
                        "documentParameters: {} does not match {}",
                        parameter.key, parameter.regex
                    )));
                }
                if value.chars().count() > parameter.max_chars {
                    return Err(ServiceError::invalid(format!(
                        "documentParameters: {} is longer than {} characters",
                        parameter.key, parameter.max_chars
                    )));
                }
                value.as_str()
            }
            None if parameter.optional => "",
            None => {
                return Err(ServiceError::invalid(format!(
                    "documentParameters: {} requires {}",
                    template.name, parameter.key
                )));
            }
        };
        let escaped = serde_json::to_string(value).expect("a string serializes");
        escaped_values.insert(parameter.key, escaped[1..escaped.len() - 1].to_owned());
    }
    // One pass over the template's own text: a value that holds another parameter's
    // placeholder stays as given instead of being filled in turn.
    static PLACEHOLDER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\$\{aws:iot:parameter:([^}]*)\}").expect("a valid pattern"));
    let document = PLACEHOLDER.replace_all(template.document, |captures: &regex::Captures<'_>| {
        escaped_values
            .get(&captures[1])
            .cloned()
            .unwrap_or_else(|| captures[0].to_owned())
    });
    Ok(document.into_owned())
}

/// The compiled pattern of a managed template parameter (compiled once per pattern).
fn parameter_pattern(parameter: &DocumentParameter) -> &'static Regex {
    static PATTERNS: LazyLock<BTreeMap<&'static str, Regex>> = LazyLock::new(|| {
        MANAGED_TEMPLATES
            .iter()
            .flat_map(|t| t.parameters)
            .map(|p| {
                let regex = Regex::new(p.regex).expect("built-in patterns compile");
                (p.regex, regex)
            })
            .collect()
    });
    &PATTERNS[parameter.regex]
}

/// A custom job template as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobTemplateRow {
    pub job_template_id: String,
    pub description: String,
    pub document: Option<String>,
    pub document_source: Option<String>,
    /// The optional configurations (rollout, abort, timeout, retry, presigned URLs,
    /// maintenance windows, package versions), as the request spelled them.
    pub config: Value,
    pub created_at: DateTime<Utc>,
}

/// What CreateJobTemplate asks for.
#[derive(Debug, Default)]
pub struct NewJobTemplate {
    pub job_template_id: String,
    pub job_arn: Option<String>,
    pub description: Option<String>,
    pub document: Option<String>,
    pub document_source: Option<String>,
    pub config: Map<String, Value>,
}

/// The CreateJobTemplate members kept as configuration, returned by DescribeJobTemplate and
/// inherited by jobs created from the template.
pub const TEMPLATE_CONFIG_MEMBERS: [&str; 7] = [
    "presignedUrlConfig",
    "jobExecutionsRolloutConfig",
    "abortConfig",
    "timeoutConfig",
    "jobExecutionsRetryConfig",
    "maintenanceWindows",
    "destinationPackageVersions",
];

const TEMPLATE_COLUMNS: &str =
    "job_template_id, description, document, document_source, config, created_at";

/// AWS's `JobDescription`: at most 2028 characters, no control characters.
fn check_description(description: &str) -> Result<()> {
    if description.is_empty()
        || description.chars().count() > 2028
        || description.chars().any(char::is_control)
    {
        return Err(ServiceError::invalid(
            "description must be 1-2028 characters without control characters",
        ));
    }
    Ok(())
}

fn check_template_id(id: &str) -> Result<()> {
    if valid_job_id(id) {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "jobTemplateId must be 1-64 characters of [a-zA-Z0-9_-], got {id:?}"
        )))
    }
}

/// A job document must be a JSON object of at most 32 KiB.
pub fn check_document(document: &str) -> Result<()> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(ServiceError::invalid(format!(
            "document is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    match serde_json::from_str::<Value>(document) {
        Ok(Value::Object(_)) => Ok(()),
        _ => Err(ServiceError::invalid("document must be a JSON object")),
    }
}

impl Jobs {
    /// What `arn` names, if it is a job template ARN of this region (managed) or of this
    /// account and region (custom).
    pub fn parse_template_arn(&self, arn: &str) -> Result<TemplateRef> {
        let invalid = || ServiceError::invalid(format!("{arn:?} is not a job template ARN"));
        let managed_prefix = format!("arn:aws:iot:{}::jobtemplate/", self.config.region);
        if let Some(rest) = arn.strip_prefix(&managed_prefix) {
            let (name, version) = rest.split_once(':').ok_or_else(invalid)?;
            return managed_template(name, Some(version))
                .map(TemplateRef::Managed)
                .ok_or_else(|| {
                    ServiceError::not_found(format!("no managed job template {name} {version}"))
                });
        }
        let id = arn
            .strip_prefix(&self.arns.job_template(""))
            .ok_or_else(invalid)?;
        check_template_id(id)?;
        Ok(TemplateRef::Custom(id.to_owned()))
    }

    /// Fills a CreateJob request from the template its `jobTemplateArn` names, if any.
    ///
    /// A managed template gives the document, with `documentParameters` substituted; a custom
    /// template gives the document (or documentSource) and every configuration the request does
    /// not set itself. `documentParameters` are for managed templates only, as on AWS.
    pub async fn apply_template(
        &self,
        document: &mut Option<String>,
        config: &mut Map<String, Value>,
    ) -> Result<()> {
        let parameters = match config.get("documentParameters") {
            None => None,
            Some(value) => Some(
                serde_json::from_value::<BTreeMap<String, String>>(value.clone()).map_err(
                    |_| ServiceError::invalid("documentParameters must map names to strings"),
                )?,
            ),
        };
        let Some(arn) = config.get("jobTemplateArn") else {
            return match parameters {
                Some(_) => Err(ServiceError::invalid(
                    "documentParameters can only be used with an AWS managed template",
                )),
                None => Ok(()),
            };
        };
        let arn = arn
            .as_str()
            .ok_or_else(|| ServiceError::invalid("jobTemplateArn must be a string"))?;
        match self.parse_template_arn(arn)? {
            TemplateRef::Managed(template) => {
                if document.is_some() || config.contains_key("documentSource") {
                    return Err(ServiceError::invalid(
                        "a job from a managed template takes its document from the template",
                    ));
                }
                *document = Some(substitute_parameters(
                    template,
                    &parameters.unwrap_or_default(),
                )?);
            }
            TemplateRef::Custom(id) => {
                if parameters.is_some() {
                    return Err(ServiceError::invalid(
                        "documentParameters can only be used with an AWS managed template",
                    ));
                }
                let template = self.job_template(&id).await?;
                if document.is_none() && !config.contains_key("documentSource") {
                    *document = template.document;
                    if let Some(source) = template.document_source {
                        config.insert("documentSource".to_owned(), Value::String(source));
                    }
                }
                for member in TEMPLATE_CONFIG_MEMBERS {
                    if member == "maintenanceWindows" {
                        continue;
                    }
                    if let (false, Some(value)) =
                        (config.contains_key(member), template.config.get(member))
                    {
                        config.insert(member.to_owned(), value.clone());
                    }
                }
                // A template's maintenance windows become the job's scheduling windows.
                if let Some(windows) = template.config.get("maintenanceWindows") {
                    let scheduling = config
                        .entry("schedulingConfig")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(scheduling) = scheduling {
                        scheduling
                            .entry("maintenanceWindows")
                            .or_insert_with(|| windows.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// The document a job was created with before `${aws:iot:parameter:…}` substitution: the
    /// managed template's, for a job made from one; otherwise the job's own.
    pub fn document_before_substitution<'a>(&self, document: &'a str, config: &Value) -> &'a str {
        let managed = config
            .get("jobTemplateArn")
            .and_then(Value::as_str)
            .and_then(|arn| match self.parse_template_arn(arn) {
                Ok(TemplateRef::Managed(template)) => Some(template.document),
                _ => None,
            });
        managed.unwrap_or(document)
    }

    /// The ARN of a managed template.
    pub fn managed_template_arn(&self, template: &ManagedTemplate) -> String {
        format!(
            "arn:aws:iot:{}::jobtemplate/{}:{}",
            self.config.region, template.name, template.version
        )
    }

    /// CreateJobTemplate. A template made from `job_arn` takes that job's document and
    /// configuration; members given in the request win.
    pub async fn create_job_template(&self, new: NewJobTemplate) -> Result<JobTemplateRow> {
        check_template_id(&new.job_template_id)?;
        let description = new
            .description
            .ok_or_else(|| ServiceError::invalid("description is required"))?;
        check_description(&description)?;
        let (mut document, mut document_source, mut config) =
            (new.document, new.document_source, new.config);
        if let Some(job_arn) = &new.job_arn {
            let job_id = job_arn
                .strip_prefix(&self.arns.job(""))
                .ok_or_else(|| ServiceError::invalid(format!("{job_arn:?} is not a job ARN")))?;
            let job = self.job(job_id).await?;
            if document.is_none() && document_source.is_none() {
                document = Some(job.document);
                document_source = job
                    .config
                    .get("documentSource")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            for member in TEMPLATE_CONFIG_MEMBERS {
                if let (false, Some(value)) = (config.contains_key(member), job.config.get(member))
                {
                    config.insert(member.to_owned(), value.clone());
                }
            }
        }
        JobConfig::validate_update(&config)?;
        if let Some(windows) = config.get("maintenanceWindows") {
            let scheduling = Map::from_iter([("maintenanceWindows".to_owned(), windows.clone())]);
            JobConfig::validate_update(&Map::from_iter([(
                "schedulingConfig".to_owned(),
                Value::Object(scheduling),
            )]))?;
        }
        match (&document, &document_source) {
            (Some(document), _) => check_document(document)?,
            (None, Some(source)) if !source.is_empty() && source.len() <= 1350 => {}
            (None, Some(_)) => {
                return Err(ServiceError::invalid(
                    "documentSource must be 1-1350 characters",
                ));
            }
            (None, None) => {
                return Err(ServiceError::invalid(
                    "one of document, documentSource or jobArn is required",
                ));
            }
        }
        let inserted = sqlx::query_as(&format!(
            "insert into engine.job_templates
                 (job_template_id, description, document, document_source, config)
             values ($1, $2, $3, $4, $5)
             on conflict do nothing
             returning {TEMPLATE_COLUMNS}"
        ))
        .bind(&new.job_template_id)
        .bind(&description)
        .bind(&document)
        .bind(&document_source)
        .bind(Value::Object(config))
        .fetch_optional(&self.pool)
        .await?;
        inserted.ok_or_else(|| {
            ServiceError::new(
                ErrorKind::Conflict,
                format!("job template {} already exists", new.job_template_id),
            )
        })
    }

    /// DescribeJobTemplate.
    pub async fn job_template(&self, id: &str) -> Result<JobTemplateRow> {
        check_template_id(id)?;
        sqlx::query_as(&format!(
            "select {TEMPLATE_COLUMNS} from engine.job_templates where job_template_id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("job template {id} does not exist")))
    }

    /// ListJobTemplates, newest first.
    pub async fn list_job_templates(
        &self,
        limit: i64,
        after: Option<&PageToken>,
    ) -> Result<Vec<JobTemplateRow>> {
        Ok(sqlx::query_as(&format!(
            "select {TEMPLATE_COLUMNS} from engine.job_templates
             where ($1::timestamptz is null or (created_at, job_template_id) < ($1, $2))
             order by created_at desc, job_template_id desc limit $3"
        ))
        .bind(after.map(|t| t.at))
        .bind(after.map(|t| t.id.as_str()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// DeleteJobTemplate. Jobs created from the template keep what they took from it.
    pub async fn delete_job_template(&self, id: &str) -> Result<()> {
        check_template_id(id)?;
        let deleted = sqlx::query("delete from engine.job_templates where job_template_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(ServiceError::not_found(format!(
                "job template {id} does not exist"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_managed_document_is_json_once_substituted() {
        for template in &MANAGED_TEMPLATES {
            let given: BTreeMap<String, String> = template
                .parameters
                .iter()
                .map(|p| (p.key.to_owned(), p.example.to_owned()))
                .collect();
            let document = substitute_parameters(template, &given).expect(template.name);
            assert!(!document.contains("${aws:iot:parameter:"), "{document}");
            let parsed: Value = serde_json::from_str(&document).expect(template.name);
            assert_eq!(parsed["version"], "1.0");
        }
    }

    #[test]
    fn values_are_escaped_checked_and_required() {
        let download = managed_template("AWS-Download-File", None).unwrap();
        let document = substitute_parameters(
            download,
            &values(&[
                ("downloadUrl", "https://h/a?b=\"c\""),
                ("filePath", "/tmp/x \\ y"),
            ]),
        )
        .unwrap();
        let parsed: Value = serde_json::from_str(&document).unwrap();
        let args = &parsed["steps"][0]["action"]["input"]["args"];
        assert_eq!(args[0], "https://h/a?b=\"c\"");
        assert_eq!(args[1], "/tmp/x \\ y");
        assert_eq!(parsed["steps"][0]["action"]["runAsUser"], "");

        let missing = substitute_parameters(download, &values(&[("filePath", "/tmp/x")]));
        assert!(
            missing
                .unwrap_err()
                .message
                .contains("requires downloadUrl")
        );
        let unknown = substitute_parameters(
            managed_template("AWS-Reboot", Some("1.0")).unwrap(),
            &values(&[("color", "red")]),
        );
        assert!(unknown.unwrap_err().message.contains("color"));
        let bad = substitute_parameters(
            managed_template("AWS-Install-Application", None).unwrap(),
            &values(&[("packages", "curl; rm -rf /")]),
        );
        assert!(bad.unwrap_err().message.contains("packages"));
    }

    #[test]
    fn a_value_holding_another_placeholder_is_not_filled_in_turn() {
        let run = managed_template("AWS-Run-Command", None).unwrap();
        let document = substitute_parameters(
            run,
            &values(&[
                ("command", "ls,/tmp/${aws:iot:parameter:runAsUser}"),
                ("runAsUser", "root"),
            ]),
        )
        .unwrap();
        let parsed: Value = serde_json::from_str(&document).unwrap();
        let action = &parsed["steps"][0]["action"];
        assert_eq!(
            action["input"]["command"],
            "ls,/tmp/${aws:iot:parameter:runAsUser}"
        );
        assert_eq!(action["runAsUser"], "root");
    }
}
