//! The job documents the agent understands, and the reasons it gives for the ones it refuses.
//!
//! 1. The seed's download document: `{"operation":"download","version","directory",
//!    "files":{"fileName","url"}}` — fetch `url` and store it at `directory` (the seed's
//!    `device.py` writes the file to that path).
//! 2. The AWS IoT Device Client v1.0 schema: `steps` of `runHandler`/`runCommand` actions,
//!    an optional `finalStep`, `ignoreStepFailure`, `runAsUser` — what the AWS managed templates
//!    (AWS-Reboot, AWS-Download-File, AWS-Install-Application, AWS-Run-Command …) produce.
//! 3. Flotilla's install document ([`flotilla_api::InstallDocument`]).
//!
//! Parsing never runs anything: a document that is neither, or is one of them with a bad field,
//! yields the reason the job is REJECTED.

use flotilla_api::InstallDocument;
use flotilla_api::install::INSTALL_OPERATION;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A job document the agent can run.
#[derive(Debug, Clone, PartialEq)]
pub enum JobDocument {
    SeedDownload(SeedDownload),
    DeviceClient(DeviceClientDocument),
    Install(InstallDocument),
}

/// The seed's `download` operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedDownload {
    pub operation: String,
    #[serde(default)]
    pub version: Option<String>,
    /// Despite its name, the seed uses it as the path of the file to write.
    pub directory: String,
    pub files: SeedFile,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedFile {
    #[serde(default)]
    pub file_name: Option<String>,
    pub url: String,
}

/// The AWS IoT Device Client job document, schema version 1.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceClientDocument {
    pub version: String,
    #[serde(default)]
    pub include_std_out: Option<Value>,
    #[serde(default)]
    pub conditions: Option<Value>,
    pub steps: Vec<Step>,
    /// Runs after the steps, whether they succeeded or not (cleanup, reporting).
    #[serde(default)]
    pub final_step: Option<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub input: Value,
    /// Empty or absent: run as the agent's own user.
    #[serde(default)]
    pub run_as_user: Option<String>,
    /// Number of stderr lines tolerated before the step counts as failed (absent: any).
    #[serde(default)]
    pub allow_std_err: Option<Value>,
    #[serde(default)]
    pub ignore_step_failure: Option<Value>,
}

/// What one step does, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// `{path}/{handler} args…`; `path` empty means the agent's handler directory.
    RunHandler {
        handler: String,
        args: Vec<String>,
        path: Option<String>,
    },
    /// A program and its arguments.
    RunCommand { argv: Vec<String> },
}

impl Action {
    /// The step's command, or why it cannot run.
    pub fn kind(&self) -> Result<StepKind, String> {
        let name = &self.name;
        match self.kind.as_str() {
            "runHandler" => {
                let handler = self.input["handler"]
                    .as_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| {
                        format!("step {name:?}: input.handler must be a non-empty string")
                    })?;
                if handler.contains('/') {
                    return Err(format!(
                        "step {name:?}: input.handler must be a file name; put its folder in input.path"
                    ));
                }
                let args = match &self.input["args"] {
                    Value::Null => Vec::new(),
                    Value::Array(items) => items
                        .iter()
                        .map(|a| a.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| format!("step {name:?}: input.args must be strings"))?,
                    _ => return Err(format!("step {name:?}: input.args must be a list")),
                };
                let path = match &self.input["path"] {
                    Value::Null => None,
                    Value::String(p) if p.is_empty() => None,
                    Value::String(p) => Some(p.clone()),
                    _ => return Err(format!("step {name:?}: input.path must be a string")),
                };
                Ok(StepKind::RunHandler {
                    handler: handler.to_owned(),
                    args,
                    path,
                })
            }
            "runCommand" => {
                let command = self.input["command"]
                    .as_str()
                    .ok_or_else(|| format!("step {name:?}: input.command must be a string"))?;
                let argv = split_command(command);
                if argv.first().is_none_or(|program| program.trim().is_empty()) {
                    return Err(format!("step {name:?}: input.command is empty"));
                }
                Ok(StepKind::RunCommand { argv })
            }
            other => Err(format!(
                "step {name:?}: action type {other:?} is not supported (runHandler or runCommand)"
            )),
        }
    }

    /// Whether a failure of this step leaves the job going.
    pub fn ignores_failure(&self) -> bool {
        match &self.ignore_step_failure {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }

    /// The user to run as, if it is not the agent's own.
    pub fn user(&self) -> Option<&str> {
        self.run_as_user.as_deref().filter(|u| !u.trim().is_empty())
    }

    /// How many stderr lines are tolerated; `None`: any.
    pub fn allowed_stderr_lines(&self) -> Option<usize> {
        match &self.allow_std_err {
            Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// Splits AWS-Run-Command's `command` at commas; `\,` is a literal comma (the Device Client's
/// escape).
pub fn split_command(command: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                parts.last_mut().expect("one part").push(',');
            }
            ',' => parts.push(String::new()),
            c => parts.last_mut().expect("one part").push(c),
        }
    }
    parts
}

/// Recognises and checks a job document.
pub fn parse(document: &Value) -> Result<JobDocument, String> {
    let Some(object) = document.as_object() else {
        return Err("the job document is not a JSON object".into());
    };
    if let Some(operation) = object.get("operation") {
        return match operation.as_str() {
            Some("download") => {
                let seed: SeedDownload = serde_json::from_value(document.clone())
                    .map_err(|e| format!("invalid download document: {e}"))?;
                let url = &seed.files.url;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(
                        "invalid download document: files.url must be an http or https URL".into(),
                    );
                }
                if seed.directory.trim().is_empty() {
                    return Err("invalid download document: directory is empty".into());
                }
                Ok(JobDocument::SeedDownload(seed))
            }
            Some(INSTALL_OPERATION) => {
                let install: InstallDocument = serde_json::from_value(document.clone())
                    .map_err(|e| format!("invalid install document: {e}"))?;
                install
                    .validate()
                    .map_err(|e| format!("invalid install document: {e}"))?;
                Ok(JobDocument::Install(install))
            }
            _ => Err(format!("unknown operation {operation}")),
        };
    }
    if object.contains_key("steps") {
        let doc: DeviceClientDocument = serde_json::from_value(document.clone())
            .map_err(|e| format!("invalid job document: {e}"))?;
        if doc.version != "1.0" {
            return Err(format!(
                "job document version {:?} is not supported (only \"1.0\")",
                doc.version
            ));
        }
        if doc.steps.is_empty() && doc.final_step.is_none() {
            return Err("invalid job document: no steps".into());
        }
        for step in doc.steps.iter().chain(doc.final_step.iter()) {
            step.action
                .kind()
                .map_err(|e| format!("invalid job document: {e}"))?;
        }
        return Ok(JobDocument::DeviceClient(doc));
    }
    Err("unknown job document: expected \"operation\" (download, flotilla.install) or \"steps\" (AWS IoT Device Client schema)".into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_seed_document_is_recognised() {
        let doc = parse(&json!({
            "operation": "download", "version": "1.0", "directory": "/tmp/f.bin",
            "files": { "fileName": "f.bin", "url": "http://h/f.bin" }
        }))
        .unwrap();
        assert!(matches!(doc, JobDocument::SeedDownload(s) if s.files.url == "http://h/f.bin"));
    }

    #[test]
    fn the_managed_run_command_document_splits_at_commas() {
        let doc = parse(&json!({
            "version": "1.0",
            "steps": [{ "action": { "name": "Run-Command", "type": "runCommand",
                "input": { "command": "echo,a\\,b,c" }, "runAsUser": "" } }]
        }))
        .unwrap();
        let JobDocument::DeviceClient(doc) = doc else {
            panic!("not a Device Client document")
        };
        assert_eq!(
            doc.steps[0].action.kind().unwrap(),
            StepKind::RunCommand {
                argv: vec!["echo".into(), "a,b".into(), "c".into()]
            }
        );
        assert_eq!(doc.steps[0].action.user(), None);
    }

    #[test]
    fn bad_documents_are_refused_with_a_reason() {
        for (document, expected) in [
            (json!([1, 2]), "not a JSON object"),
            (json!({ "hello": 1 }), "unknown job document"),
            (json!({ "operation": "format-disk" }), "unknown operation"),
            (
                json!({ "operation": "download", "directory": "/x" }),
                "files",
            ),
            (
                json!({ "version": "2.0", "steps": [] }),
                "version \"2.0\" is not supported",
            ),
            (
                json!({ "version": "1.0", "steps": [{ "action": { "name": "x", "type": "runScript", "input": {} } }] }),
                "runScript",
            ),
            (
                json!({ "operation": "flotilla.install", "version": "1.0" }),
                "invalid install document",
            ),
        ] {
            let reason = parse(&document).unwrap_err();
            assert!(reason.contains(expected), "{document}: {reason}");
        }
    }
}
