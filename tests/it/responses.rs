//! `POST /v1/responses` through the official Python SDK, the real CLIs and the mock model:
//! `previous_response_id` chains resuming one CLI session, the event stream, stored responses
//! and their owners, input forms, `instructions`, `text.format`, refusals, failed turns.

use crate::support::mock_model::{clis_bin, directive, MockModel};
use crate::support::{self, Server};
use serde_json::{json, Value};

struct Rig {
    mock: MockModel,
    server: Server,
    token: String,
}

fn rig() -> Rig {
    let mock = MockModel::start();
    let toml = format!(
        "{}\n[workspace]\nlock_timeout_seconds = 30\n",
        mock.codara_toml(&clis_bin())
    );
    let server = support::server().toml(&toml).start();
    let token = server.login();
    Rig {
        mock,
        server,
        token,
    }
}

impl Rig {
    /// Runs `script` with the SDK using `key`; asserts it exits 0 and returns its stdout lines
    /// as JSON.
    fn sdk_as(&self, key: &str, script: &str) -> Vec<Value> {
        let (code, out, err) = support::sdk_python(self.server.addr, key, script);
        assert_eq!(code, 0, "SDK script failed:\n{err}\n{out}");
        out.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{err}")))
            .collect()
    }

    fn sdk(&self, script: &str) -> Vec<Value> {
        self.sdk_as(&self.token, script)
    }

    fn post(&self, key: &str, body: Value) -> support::HttpResponse {
        self.server
            .post_json("/v1/responses", Some(key), &body.to_string())
    }

    /// The stored turns of a session (management API), each with the prompt the CLI was sent.
    fn turns(&self, session_id: &str) -> Vec<Value> {
        let response = self.server.get(
            &format!("/management/v1/sessions/{session_id}"),
            Some(&self.token),
        );
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["data"]["turns"].as_array().unwrap().clone()
    }

    /// The bodies of the model requests (not token counts or model lists) from index `from` on.
    fn model_requests_from(&self, from: usize) -> Vec<String> {
        self.model_requests().into_iter().skip(from).collect()
    }

    fn model_requests(&self) -> Vec<String> {
        self.mock
            .requests()
            .iter()
            .filter(|r| !r.path.contains("countTokens") && !r.path.ends_with("/models"))
            .map(|r| r.body_text())
            .collect()
    }

    fn user_key(&self, email: &str) -> String {
        let body = json!({"email": email, "display_name": email});
        let response =
            self.server
                .post_json("/management/v1/users", Some(&self.token), &body.to_string());
        assert_eq!(response.status, 201, "{}", response.text());
        response.json()["data"]["api_key"]["key"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Python that prints one response as a JSON line: the fields the tests read, with the
/// extension fields from the SDK object's extras.
const PRINT_RESPONSE: &str = r#"
import json
def show(r, **more):
    extra = r.model_extra or {}
    usage = r.usage.total_tokens if r.usage else None
    print(json.dumps(dict({"id": r.id, "status": r.status, "text": r.output_text, "model": r.model,
        "previous": r.previous_response_id, "instructions": r.instructions, "store": r.store,
        "metadata": r.metadata, "usage": usage, "session_id": extra.get("session_id"),
        "resumed": extra.get("resumed"), "turn_id": extra.get("turn_id"),
        "workspace_id": extra.get("workspace_id"), "modified_files": extra.get("modified_files"),
        "extensions": extra.get("extensions")}, **more)))
"#;

fn chain_resumes_one_cli_session(provider: &str) {
    let rig = rig();
    let questions = [
        "first question alpha",
        "second question beta",
        "third question gamma",
    ];
    // The first request names the model, the second too, the third inherits it from the chain.
    let lines = rig.sdk(&format!(
        r#"{PRINT_RESPONSE}
import openai
client = openai.OpenAI()
prev = None
for i, text in enumerate({questions:?}):
    kwargs = {{"previous_response_id": prev}} if prev else {{}}
    if i < 2:
        kwargs["model"] = "uag-{provider}"
    r = client.responses.create(input=text, **kwargs)
    show(r)
    prev = r.id
"#
    ));
    assert_eq!(lines.len(), 3, "{lines:?}");
    let session_id = lines[0]["session_id"].as_str().expect("session_id");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["status"], "completed", "{provider}: {line}");
        assert_eq!(
            line["session_id"], session_id,
            "{provider}: one session: {line}"
        );
        assert_eq!(line["resumed"], i > 0, "{provider}: turn {}: {line}", i + 1);
        assert!(line["id"].as_str().unwrap().starts_with("resp_"), "{line}");
        assert_eq!(line["extensions"]["session_id"], session_id);
        if i > 0 {
            assert_eq!(line["previous"], lines[i - 1]["id"], "{line}");
        }
    }
    // The model saw the whole conversation on the third turn (the CLI keeps the history) ...
    let third = lines[2]["text"].as_str().unwrap();
    assert!(
        third.starts_with("MOCK_REPLY n=3: third question gamma"),
        "{provider}: {third}"
    );
    // ... while the gateway sent the CLI each user message exactly once: the first turn its
    // question, each resumed turn only the new one.
    let turns = rig.turns(session_id);
    let prompts: Vec<&str> = turns
        .iter()
        .map(|t| t["prompt"].as_str().unwrap())
        .collect();
    assert_eq!(prompts, questions, "{provider}: {turns:?}");
    let resumed: Vec<&Value> = turns.iter().map(|t| &t["resumed"]).collect();
    assert_eq!(resumed, [&json!(false), &json!(true), &json!(true)]);
    // In every model request each question is one message, never repeated inside a flattened
    // transcript.
    for body in rig.model_requests() {
        for question in questions {
            let n = body.matches(&format!("\"{question}\"")).count();
            assert!(
                n <= 1,
                "{provider}: {question:?} appears {n} times in {body}"
            );
        }
    }
}

#[test]
fn a_codex_chain_by_previous_response_id_resumes_one_cli_session() {
    chain_resumes_one_cli_session("codex");
}

#[test]
fn a_gemini_chain_by_previous_response_id_resumes_one_cli_session() {
    chain_resumes_one_cli_session("gemini");
}

#[test]
fn a_stream_parses_with_the_sdk_in_the_official_event_order() {
    let rig = rig();
    let prompt = directive(json!({"reply": "streamed in three parts", "chunks": 3,
        "chunk_delay_ms": 50}));
    let lines = rig.sdk(&format!(
        r#"
import json, openai
client = openai.OpenAI()
stream = client.responses.create(model="uag-gemini", input={prompt:?}, stream=True)
events = []
deltas = ""
done = None
completed = None
for event in stream:
    events.append([event.type, event.sequence_number])
    if event.type == "response.output_text.delta":
        deltas += event.delta
    elif event.type == "response.output_text.done":
        done = event.text
    elif event.type == "response.completed":
        r = event.response
        extra = r.model_extra or {{}}
        completed = {{"id": r.id, "status": r.status, "text": r.output_text,
            "usage": [r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens],
            "session_id": extra.get("session_id"), "turn_id": extra.get("turn_id"),
            "modified_files": extra.get("modified_files"), "diff": extra.get("diff"),
            "actions": extra.get("actions"), "resumed": extra.get("resumed"),
            "extensions": sorted((extra.get("extensions") or {{}}).keys())}}
    elif event.type == "response.created":
        assert event.response.status == "in_progress", event
print(json.dumps({{"events": events, "deltas": deltas, "done": done, "completed": completed}}))
"#
    ));
    let result = &lines[0];
    let events = result["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e[0].as_str().unwrap()).collect();
    let n_deltas = types
        .iter()
        .filter(|t| **t == "response.output_text.delta")
        .count();
    assert!(n_deltas >= 2, "gemini streams several deltas: {types:?}");
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", n_deltas));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(types, expected);
    let numbers: Vec<u64> = events.iter().map(|e| e[1].as_u64().unwrap()).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "sequence numbers increase: {numbers:?}"
    );
    assert_eq!(numbers[0], 0);
    assert_eq!(result["deltas"], "streamed in three parts");
    assert_eq!(result["done"], result["deltas"]);
    let completed = &result["completed"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["text"], "streamed in three parts");
    let usage = completed["usage"].as_array().unwrap();
    assert!(usage[0].as_u64().unwrap() > 0, "{completed}");
    assert_eq!(
        usage[2].as_u64().unwrap(),
        usage[0].as_u64().unwrap() + usage[1].as_u64().unwrap()
    );
    assert!(completed["session_id"]
        .as_str()
        .unwrap()
        .starts_with("ses_"));
    assert!(completed["turn_id"].as_str().unwrap().starts_with("trn_"));
    assert_eq!(completed["modified_files"], json!([]));
    assert_eq!(completed["resumed"], false);
    assert!(completed["actions"].is_array() && completed["diff"].is_string());
    assert_eq!(
        completed["extensions"],
        json!([
            "actions",
            "diff",
            "dirty",
            "modified_files",
            "resumed",
            "session_id",
            "turn_id",
            "workspace_id"
        ])
    );

    // On the wire: named events, no `[DONE]` sentinel.
    let raw = rig.post(
        &rig.token,
        json!({"model": "uag-codex", "input": "raw stream", "stream": true}),
    );
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert_eq!(raw.header("content-type"), Some("text/event-stream"));
    let text = raw.text();
    assert!(
        text.starts_with("event: response.created\ndata: {"),
        "{text}"
    );
    assert!(
        text.contains("\nevent: response.completed\ndata: {"),
        "{text}"
    );
    assert!(!text.contains("[DONE]"), "{text}");
}

#[test]
fn stored_responses_belong_to_their_owner_and_store_false_keeps_none() {
    let rig = rig();
    let alice = rig.user_key("alice@example.com");
    let bob = rig.user_key("bob@example.com");
    let lines = rig.sdk_as(
        &alice,
        &format!(
            r#"{PRINT_RESPONSE}
import openai
client = openai.OpenAI()
r = client.responses.create(model="uag-codex", input="remember this", metadata={{"ticket": "T-1"}})
show(r)
got = client.responses.retrieve(r.id)
show(got)
hidden = client.responses.create(model="uag-codex", input="forget this", store=False)
show(hidden)
try:
    client.responses.retrieve(hidden.id)
    print(json.dumps({{"retrieved": True}}))
except openai.NotFoundError as e:
    print(json.dumps({{"retrieve_status": e.status_code}}))
try:
    client.responses.create(model="uag-codex", input="go on", previous_response_id=hidden.id)
    print(json.dumps({{"chained": True}}))
except openai.NotFoundError as e:
    print(json.dumps({{"chain_status": e.status_code, "error": e.body}}))
"#
        ),
    );
    assert_eq!(lines.len(), 5, "{lines:?}");
    let (created, retrieved, hidden) = (&lines[0], &lines[1], &lines[2]);
    for field in [
        "id",
        "status",
        "text",
        "model",
        "metadata",
        "session_id",
        "turn_id",
        "usage",
    ] {
        assert_eq!(
            retrieved[field], created[field],
            "{field}: {retrieved} vs {created}"
        );
    }
    assert_eq!(retrieved["metadata"], json!({"ticket": "T-1"}));
    assert_eq!(retrieved["store"], true);
    assert_eq!(retrieved["workspace_id"], ".", "a user's base workspace");
    assert!(retrieved["text"]
        .as_str()
        .unwrap()
        .contains("remember this"));
    assert_eq!(hidden["store"], false);
    assert_eq!(hidden["status"], "completed");
    assert_eq!(lines[3], json!({"retrieve_status": 404}));
    assert_eq!(lines[4]["chain_status"], 404, "{}", lines[4]);
    assert_eq!(lines[4]["error"]["param"], "previous_response_id");
    assert_eq!(lines[4]["error"]["code"], "previous_response_not_found");

    // Another user, and the operator, cannot read or continue Alice's response.
    let id = created["id"].as_str().unwrap();
    for key in [bob.as_str(), rig.token.as_str()] {
        let got = rig.server.get(&format!("/v1/responses/{id}"), Some(key));
        assert_eq!(got.status, 404, "{}", got.text());
        assert_eq!(got.header("x-should-retry"), Some("false"));
        let chained = rig.post(
            key,
            json!({"model": "uag-codex", "input": "steal", "previous_response_id": id}),
        );
        assert_eq!(chained.status, 404, "{}", chained.text());
        assert_eq!(chained.json()["error"]["param"], "previous_response_id");
        let deleted = rig.server.request(
            "DELETE",
            &format!("/v1/responses/{id}"),
            &[("Authorization", &format!("Bearer {key}"))],
            None,
        );
        assert_eq!(deleted.status, 404, "{}", deleted.text());
    }
    // A user's `workspace_root` is refused, as on chat.
    let refused = rig.post(
        &bob,
        json!({"model": "uag-codex", "input": "x", "workspace_root": "/tmp"}),
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.json()["error"]["param"], "workspace_root");

    // Alice deletes hers: it is gone for retrieval and for chaining.
    let lines = rig.sdk_as(
        &alice,
        &format!(
            r#"
import json, openai
client = openai.OpenAI()
client.responses.delete("{id}")
try:
    client.responses.retrieve("{id}")
    print(json.dumps({{"retrieved": True}}))
except openai.NotFoundError as e:
    print(json.dumps({{"retrieve_status": e.status_code}}))
"#
        ),
    );
    assert_eq!(lines, [json!({"retrieve_status": 404})]);
}

#[test]
fn input_forms_instructions_and_text_format() {
    let rig = rig();
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}},
        "required": ["answer"], "additionalProperties": false})
    .to_string();
    let lines = rig.sdk(&format!(
        r#"{PRINT_RESPONSE}
import openai
client = openai.OpenAI()
show(client.responses.create(model="uag-opencode", input="plain string input"))
first = client.responses.create(model="uag-codex", instructions="Answer like a pirate",
    input=[{{"role": "developer", "content": "The project is called Gull"}},
           {{"type": "message", "role": "user",
             "content": [{{"type": "input_text", "text": "part one"}},
                         {{"type": "input_text", "text": "part two"}}]}}])
show(first)
same = client.responses.create(model="uag-codex", instructions="Answer like a pirate",
    input=[{{"role": "user", "content": "next with the same instructions"}}],
    previous_response_id=first.id)
show(same)
changed = client.responses.create(model="uag-codex", instructions="Answer like a judge",
    input="next with new instructions", previous_response_id=same.id)
show(changed)
structured = client.responses.create(model="uag-codex", input="give me json",
    text={{"format": {{"type": "json_schema", "name": "answer", "schema": json.loads({schema:?}),
                       "strict": True}}}})
show(structured, format=structured.text.format.type)
"#
    ));
    assert_eq!(lines.len(), 5, "{lines:?}");
    let (plain, first, same, changed, structured) =
        (&lines[0], &lines[1], &lines[2], &lines[3], &lines[4]);
    assert_eq!(plain["status"], "completed", "{plain}");
    assert!(plain["text"]
        .as_str()
        .unwrap()
        .ends_with("plain string input"));
    assert_eq!(first["instructions"], "Answer like a pirate");
    let turns = rig.turns(first["session_id"].as_str().unwrap());
    assert_eq!(turns.len(), 3, "{turns:?}");
    // Instructions first, then the input items; content parts joined.
    let prompt = turns[0]["prompt"].as_str().unwrap();
    assert!(
        prompt.starts_with("Instructions:\nAnswer like a pirate"),
        "{prompt}"
    );
    assert!(prompt.contains("The project is called Gull"), "{prompt}");
    assert!(prompt.contains("part one\npart two"), "{prompt}");
    // Unchanged instructions: the CLI session is resumed with the new message only.
    assert_eq!(same["resumed"], true, "{same}");
    assert_eq!(turns[1]["prompt"], "next with the same instructions");
    // Changed instructions apply alone (as on OpenAI): a fresh CLI session seeded with the
    // conversation under the new instructions, not the old ones.
    assert_eq!(changed["resumed"], false, "{changed}");
    assert_eq!(changed["session_id"], first["session_id"]);
    assert_eq!(changed["instructions"], "Answer like a judge");
    let prompt = turns[2]["prompt"].as_str().unwrap();
    assert!(
        prompt.starts_with("Instructions:\nAnswer like a judge"),
        "{prompt}"
    );
    // (The earlier replies echo their prompts, so "pirate" remains inside the history.)
    let (instructions_part, _) = prompt.split_once("Conversation so far:").unwrap();
    assert!(!instructions_part.contains("pirate"), "{prompt}");
    assert!(prompt.contains("The project is called Gull") && prompt.contains("part two"));
    assert!(
        prompt.contains("next with the same instructions"),
        "{prompt}"
    );
    assert!(prompt.ends_with("next with new instructions"), "{prompt}");
    // `text.format` json_schema is accepted and the turn runs.
    assert_eq!(structured["status"], "completed", "{structured}");
    assert_eq!(structured["format"], "json_schema");

    // Refusals name the field, before anything runs.
    let before = rig.model_requests().len();
    for (field, value, param) in [
        (
            "tools",
            json!([{"type": "function", "name": "f", "parameters": {}}]),
            "tools",
        ),
        ("tool_choice", json!("required"), "tool_choice"),
        (
            "text",
            json!({"format": {"type": "xml"}}),
            "text.format.type",
        ),
        (
            "input",
            json!([{"type": "function_call_output", "call_id": "c", "output": "x"}]),
            "input[0].type",
        ),
        (
            "previous_response_id",
            json!("resp_nope"),
            "previous_response_id",
        ),
    ] {
        let mut body = json!({"model": "uag-codex", "input": "hi"});
        body[field] = value;
        let response = rig.post(&rig.token, body);
        let expected = if param == "previous_response_id" {
            404
        } else {
            400
        };
        assert_eq!(response.status, expected, "{field}: {}", response.text());
        assert_eq!(
            response.json()["error"]["param"],
            param,
            "{}",
            response.text()
        );
    }
    assert_eq!(rig.model_requests().len(), before, "nothing ran");
    // Sampling fields are accepted and have no effect.
    let response = rig.post(
        &rig.token,
        json!({"model": "uag-codex", "input": "hi", "temperature": 0.2, "top_p": 0.9,
               "max_output_tokens": 100, "user": "u", "reasoning": {"effort": "low"},
               "truncation": "auto", "parallel_tool_calls": false, "tools": [],
               "tool_choice": "none"}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["tool_choice"], "none");
}

#[test]
fn a_failed_turn_is_reported_once_and_as_response_failed_in_a_stream() {
    let rig = rig();
    let failing = directive(json!({"http_error": 400, "message": "the model refused"}));
    let lines = rig.sdk(&format!(
        r#"
import json, openai
client = openai.OpenAI()
try:
    client.responses.create(model="uag-codex", input={failing:?})
    print(json.dumps({{"error": None}}))
except openai.APIStatusError as e:
    print(json.dumps({{"status": e.status_code, "retry": e.response.headers.get("x-should-retry"),
        "code": e.body.get("code") if isinstance(e.body, dict) else None}}))
"#
    ));
    assert_eq!(
        lines,
        [json!({"status": 502, "retry": "false", "code": "provider_error"})]
    );
    assert_eq!(rig.model_requests().len(), 1, "the agent turn ran once");

    let before = rig.model_requests().len();
    let lines = rig.sdk(&format!(
        r#"
import json, openai
client = openai.OpenAI()
types = []
failed = None
for event in client.responses.create(model="uag-codex", input={failing:?}, stream=True):
    types.append(event.type)
    if event.type == "response.failed":
        r = event.response
        failed = {{"id": r.id, "status": r.status, "code": r.error.code, "message": r.error.message,
            "turn_id": (r.model_extra or {{}}).get("turn_id")}}
print(json.dumps({{"types": types, "failed": failed}}))
"#
    ));
    let result = &lines[0];
    assert_eq!(
        result["types"],
        json!([
            "response.created",
            "response.in_progress",
            "response.failed"
        ])
    );
    let failed = &result["failed"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["code"], "provider_error");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("the model refused"),
        "{failed}"
    );
    assert!(failed["turn_id"].as_str().unwrap().starts_with("trn_"));
    assert_eq!(rig.model_requests_from(before).len(), 1, "ran once");
    // The failed response is on record with its error.
    let id = failed["id"].as_str().unwrap();
    let got = rig
        .server
        .get(&format!("/v1/responses/{id}"), Some(&rig.token));
    assert_eq!(got.status, 200, "{}", got.text());
    let got = got.json();
    assert_eq!(got["status"], "failed");
    assert_eq!(got["error"]["code"], "provider_error");
}
