//! `POST /v1/responses`: OpenAI Responses in, translated to the plugin's canonical request,
//! Responses events (`response.created` ... `response.completed`) or a `response` object out.
//! The plugin picks the upstream surface by model (GPT-5.x goes to Mantle's Responses API,
//! others to theirs), so any catalog model can be asked here.
//!
//! Translation: `instructions` and system/developer items become system messages; message
//! items with `input_text`/`output_text`/`input_image` parts become messages;
//! `function_call` items the assistant's `tool_calls`; `function_call_output` items `tool`
//! messages; `reasoning` items of earlier turns are dropped; function tools become Chat
//! Completions tools; `reasoning.effort` the plugin's level; `max_output_tokens`
//! `max_tokens`. Fields this front cannot honour are a 400 naming them.

use axum::response::Response;
use mantle_host_shim::{Event, EventKind};
use serde_json::{json, Map, Value};

use super::{
    accumulate::{Reply, ToolCall, Usage},
    answer,
    errors::Surface,
    prologue, sse, unix_now, ApiError, FrontState,
};

/// Request fields this front accepts.
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "reasoning",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "store",
    "metadata",
    "parallel_tool_calls",
    "user",
];

/// The canonical request for a Responses body, and whether to stream.
pub fn canonical(body: Value) -> Result<(Value, bool), ApiError> {
    let (body, model, stream) = prologue(body, Some(KNOWN_FIELDS))?;
    let mut messages = Vec::new();
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(_) => return Err(ApiError::invalid("instructions", "expected a string")),
    }
    match body.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                translate_item(item, i, &mut messages)?;
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "input",
                "required, a string or a non-empty array of items",
            ))
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(max) = body.get("max_output_tokens").filter(|v| !v.is_null()) {
        out.insert("max_tokens".into(), max.clone());
    }
    for field in ["temperature", "top_p", "parallel_tool_calls"] {
        if let Some(v) = body.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), v.clone());
        }
    }
    if let Some(tools) = body.get("tools").filter(|v| !v.is_null()) {
        out.insert("tools".into(), translate_tools(tools)?);
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| !v.is_null()) {
        out.insert("tool_choice".into(), translate_tool_choice(choice)?);
    }
    match body.get("reasoning").map(|r| &r["effort"]) {
        None | Some(Value::Null) => {}
        Some(Value::String(e)) => {
            let level = match e.as_str() {
                "none" => "off",
                "minimal" | "low" | "medium" | "high" | "xhigh" => e.as_str(),
                other => {
                    return Err(ApiError::invalid(
                        "reasoning.effort",
                        format!(
                            "expected none, minimal, low, medium, high or xhigh, found {other:?}"
                        ),
                    ))
                }
            };
            out.insert("reasoning".into(), json!(level));
        }
        Some(_) => return Err(ApiError::invalid("reasoning.effort", "expected a string")),
    }
    Ok((Value::Object(out), stream))
}

fn content_parts(content: &Value, at: &str) -> Result<Value, ApiError> {
    match content {
        Value::String(s) => Ok(json!(s)),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| match p["type"].as_str().unwrap_or_default() {
                "input_text" | "output_text" | "text" => Ok(json!({"type": "text",
                    "text": p["text"].as_str().unwrap_or_default()})),
                "input_image" => Ok(json!({"type": "image_url",
                    "image_url": {"url": p["image_url"].as_str().unwrap_or_default()}})),
                other => Err(ApiError::invalid(
                    &format!("{at}.content[{j}].type"),
                    format!("{at}.content[{j}].type: part type {other:?} is not supported"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => Err(ApiError::invalid(
            &format!("{at}.content"),
            "expected a string or content parts",
        )),
    }
}

fn translate_item(item: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let at = format!("input[{i}]");
    match item["type"].as_str().unwrap_or("message") {
        "message" => {
            let role = match item["role"].as_str().unwrap_or_default() {
                "developer" | "system" => "system",
                r @ ("user" | "assistant") => r,
                _ => {
                    return Err(ApiError::invalid(
                        &format!("{at}.role"),
                        "expected user, assistant, system or developer",
                    ))
                }
            };
            let mut content = content_parts(&item["content"], &at)?;
            if role != "user" {
                // System and assistant turns are text only in Chat Completions.
                if let Value::Array(parts) = &content {
                    content = json!(parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<Vec<_>>()
                        .join(""));
                }
            }
            out.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let call = json!({
                "id": item["call_id"].as_str().unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": item["name"].as_str().unwrap_or_default(),
                    "arguments": item["arguments"].as_str().unwrap_or("{}"),
                },
            });
            match out.last_mut() {
                Some(last) if last["role"] == "assistant" => {
                    match last["tool_calls"].as_array_mut() {
                        Some(calls) => calls.push(call),
                        None => last["tool_calls"] = json!([call]),
                    }
                }
                _ => out.push(json!({"role": "assistant", "content": "", "tool_calls": [call]})),
            }
        }
        "function_call_output" => out.push(json!({
            "role": "tool",
            "tool_call_id": item["call_id"].as_str().unwrap_or_default(),
            "content": match &item["output"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        })),
        "reasoning" => {}
        other => {
            return Err(ApiError::invalid(
                &format!("{at}.type"),
                format!("{at}.type: item type {other:?} is not supported"),
            ))
        }
    }
    Ok(())
}

fn translate_tools(tools: &Value) -> Result<Value, ApiError> {
    let list = tools
        .as_array()
        .ok_or_else(|| ApiError::invalid("tools", "expected an array"))?;
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            if t["type"] != "function" {
                return Err(ApiError::invalid(
                    &format!("tools[{i}].type"),
                    format!(
                        "tools[{i}].type: only function tools are supported, found {}",
                        t["type"]
                    ),
                ));
            }
            let name = t["name"].as_str().ok_or_else(|| {
                ApiError::invalid(&format!("tools[{i}].name"), "required, a string")
            })?;
            let mut function = json!({"name": name,
                "parameters": t.get("parameters").cloned().unwrap_or(json!({"type": "object"}))});
            if let Some(d) = t["description"].as_str() {
                function["description"] = json!(d);
            }
            if let Some(s) = t.get("strict").filter(|s| s.is_boolean()) {
                function["strict"] = s.clone();
            }
            Ok(json!({"type": "function", "function": function}))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn translate_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(s) if ["auto", "none", "required"].contains(&s.as_str()) => {
            Ok(choice.clone())
        }
        Value::Object(o) if o.get("type") == Some(&json!("function")) => match o.get("name") {
            Some(Value::String(name)) => {
                Ok(json!({"type": "function", "function": {"name": name}}))
            }
            _ => Err(ApiError::invalid("tool_choice.name", "required, a string")),
        },
        _ => Err(ApiError::invalid(
            "tool_choice",
            "expected auto, none, required or {type: function, name}",
        )),
    }
}

/// Answers one Responses request.
pub async fn handle(state: &FrontState, body: Value) -> Response {
    let (request, stream) = match canonical(body) {
        Ok(pair) => pair,
        Err(e) => return e.into_response(Surface::OpenAi),
    };
    answer(
        state,
        request,
        Surface::OpenAi,
        stream,
        |model, _| ResponseEncoder::new(model),
        |reply, model, _| {
            let id = response_id(reply.id.as_deref());
            let output = output_items(reply, &id);
            response_object(
                &id,
                reply.model.as_deref().unwrap_or(model),
                unix_now(),
                status_of(&reply.stop_reason),
                output,
                reply.usage.as_ref(),
            )
        },
    )
    .await
}

fn response_id(upstream: Option<&str>) -> String {
    match upstream {
        Some(id) if id.starts_with("resp_") => id.to_string(),
        Some(id) if !id.is_empty() => format!("resp_{id}"),
        _ => format!("resp_mantle{}", unix_now()),
    }
}

/// `completed`, or `incomplete` when the model stopped at its token limit or was filtered.
fn status_of(stop_reason: &str) -> &'static str {
    match stop_reason {
        "length" | "content_filter" => "incomplete",
        _ => "completed",
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input,
        "input_tokens_details": {"cached_tokens": u.cache_read},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.input + u.output,
    })
}

/// A whole `response` object (`status` completed or incomplete; `in_progress` while streaming).
fn response_object(
    id: &str,
    model: &str,
    created_at: u64,
    status: &str,
    output: Vec<Value>,
    usage: Option<&Usage>,
) -> Value {
    let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "model": model,
        "output": output,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": null,
        "metadata": {},
        "parallel_tool_calls": true,
        "temperature": null,
        "top_p": null,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage.map(usage_json),
    })
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"id": id, "type": "reasoning", "status": "completed",
        "summary": [], "content": [{"type": "reasoning_text", "text": text}]})
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "in_progress" {
        json!([])
    } else {
        json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
    };
    json!({"id": id, "type": "message", "role": "assistant", "status": status, "content": content})
}

fn function_item(id: &str, call: &ToolCall, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call.id,
        "name": call.name, "arguments": call.arguments})
}

/// The output items of a whole reply: reasoning, message, function calls.
fn output_items(reply: &Reply, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    if !reply.reasoning.is_empty() {
        out.push(reasoning_item(&format!("rs_{id}"), &reply.reasoning));
    }
    if !reply.text.is_empty() || reply.tool_calls.is_empty() {
        out.push(message_item(&format!("msg_{id}"), &reply.text, "completed"));
    }
    for (i, call) in reply.tool_calls.iter().enumerate() {
        out.push(function_item(&format!("fc_{id}_{i}"), call, "completed"));
    }
    out
}

/// The output item being streamed.
enum Open {
    Reasoning { id: String, text: String },
    Message { id: String, text: String },
    Function { id: String, call: ToolCall },
}

/// Plugin events as Responses stream events, each with its `sequence_number`.
pub struct ResponseEncoder {
    id: String,
    model: String,
    created_at: u64,
    sequence: u64,
    started: bool,
    open: Option<Open>,
    done: Vec<Value>,
    usage: Option<Usage>,
}

impl ResponseEncoder {
    /// An encoder for a request to `model`.
    pub fn new(model: String) -> Self {
        ResponseEncoder {
            id: response_id(None),
            model,
            created_at: unix_now(),
            sequence: 0,
            started: false,
            open: None,
            done: Vec::new(),
            usage: None,
        }
    }

    fn emit(&mut self, out: &mut String, mut payload: Value) {
        payload["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        let kind = payload["type"].as_str().unwrap_or_default().to_string();
        sse::named(out, &kind, &payload);
    }

    fn snapshot(&self, status: &str) -> Value {
        response_object(
            &self.id,
            &self.model,
            self.created_at,
            status,
            self.done.clone(),
            self.usage.as_ref(),
        )
    }

    fn start(&mut self, out: &mut String) {
        if self.started {
            return;
        }
        self.started = true;
        let snapshot = self.snapshot("in_progress");
        self.emit(
            out,
            json!({"type": "response.created", "response": snapshot}),
        );
        let snapshot = self.snapshot("in_progress");
        self.emit(
            out,
            json!({"type": "response.in_progress", "response": snapshot}),
        );
    }

    fn output_index(&self) -> usize {
        self.done.len()
    }

    /// Closes the open item with its `.done` events and keeps it for the final snapshot.
    fn close(&mut self, out: &mut String) {
        let index = self.output_index();
        let item = match self.open.take() {
            None => return,
            Some(Open::Reasoning { id, text }) => {
                self.emit(
                    out,
                    json!({"type": "response.reasoning_text.done", "item_id": id,
                        "output_index": index, "content_index": 0, "text": text}),
                );
                reasoning_item(&id, &text)
            }
            Some(Open::Message { id, text }) => {
                self.emit(
                    out,
                    json!({"type": "response.output_text.done", "item_id": id,
                        "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                );
                let part =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                self.emit(
                    out,
                    json!({"type": "response.content_part.done", "item_id": id,
                        "output_index": index, "content_index": 0, "part": part}),
                );
                message_item(&id, &text, "completed")
            }
            Some(Open::Function { id, call }) => {
                self.emit(
                    out,
                    json!({"type": "response.function_call_arguments.done", "item_id": id,
                        "output_index": index, "arguments": call.arguments}),
                );
                function_item(&id, &call, "completed")
            }
        };
        self.emit(
            out,
            json!({"type": "response.output_item.done", "output_index": index, "item": item}),
        );
        self.done.push(item);
    }

    fn open_reasoning(&mut self, out: &mut String) {
        if matches!(self.open, Some(Open::Reasoning { .. })) {
            return;
        }
        self.close(out);
        let id = format!("rs_{}_{}", self.id, self.output_index());
        let item = json!({"id": id, "type": "reasoning", "status": "in_progress",
            "summary": [], "content": []});
        let index = self.output_index();
        self.emit(
            out,
            json!({"type": "response.output_item.added", "output_index": index, "item": item}),
        );
        self.open = Some(Open::Reasoning {
            id,
            text: String::new(),
        });
    }

    fn open_message(&mut self, out: &mut String) {
        if matches!(self.open, Some(Open::Message { .. })) {
            return;
        }
        self.close(out);
        let id = format!("msg_{}_{}", self.id, self.output_index());
        let index = self.output_index();
        self.emit(
            out,
            json!({"type": "response.output_item.added", "output_index": index,
                "item": message_item(&id, "", "in_progress")}),
        );
        self.emit(
            out,
            json!({"type": "response.content_part.added", "item_id": id, "output_index": index,
                "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
        );
        self.open = Some(Open::Message {
            id,
            text: String::new(),
        });
    }
}

impl sse::Encoder for ResponseEncoder {
    fn encode(&mut self, event: &Event, out: &mut String) {
        let v = event.value();
        if event.kind == EventKind::Start {
            if let Some(id) = v["id"].as_str() {
                self.id = response_id(Some(id));
            }
            if let Some(m) = v["model"].as_str() {
                self.model = m.to_string();
            }
        }
        self.start(out);
        let index = self.output_index();
        match event.kind {
            EventKind::Start | EventKind::ToolCallEnd => {}
            EventKind::ReasoningDelta if event.text.is_empty() => {}
            EventKind::ReasoningDelta => {
                self.open_reasoning(out);
                let index = self.output_index();
                if let Some(Open::Reasoning { id, text }) = &mut self.open {
                    text.push_str(&event.text);
                    let id = id.clone();
                    self.emit(
                        out,
                        json!({"type": "response.reasoning_text.delta", "item_id": id,
                            "output_index": index, "content_index": 0, "delta": event.text}),
                    );
                }
            }
            EventKind::TextDelta => {
                self.open_message(out);
                let index = self.output_index();
                if let Some(Open::Message { id, text }) = &mut self.open {
                    text.push_str(&event.text);
                    let id = id.clone();
                    self.emit(
                        out,
                        json!({"type": "response.output_text.delta", "item_id": id,
                            "output_index": index, "content_index": 0, "delta": event.text,
                            "logprobs": []}),
                    );
                }
            }
            EventKind::ToolCallStart => {
                self.close(out);
                let index = self.output_index();
                let call = ToolCall {
                    id: v["id"].as_str().unwrap_or_default().to_string(),
                    name: v["name"].as_str().unwrap_or_default().to_string(),
                    arguments: String::new(),
                };
                let id = format!("fc_{}_{index}", self.id);
                self.emit(
                    out,
                    json!({"type": "response.output_item.added", "output_index": index,
                        "item": function_item(&id, &call, "in_progress")}),
                );
                self.open = Some(Open::Function { id, call });
            }
            EventKind::ToolCallDelta => {
                if let Some(Open::Function { id, call }) = &mut self.open {
                    call.arguments.push_str(&event.text);
                    let id = id.clone();
                    self.emit(
                        out,
                        json!({"type": "response.function_call_arguments.delta", "item_id": id,
                            "output_index": index, "delta": event.text}),
                    );
                }
            }
            EventKind::Usage => self.usage = Some(Usage::from_event(&v)),
            EventKind::Done => {
                self.close(out);
                let status = status_of(v["stop_reason"].as_str().unwrap_or("stop"));
                let kind = if status == "completed" {
                    "response.completed"
                } else {
                    "response.incomplete"
                };
                let snapshot = self.snapshot(status);
                self.emit(out, json!({"type": kind, "response": snapshot}));
            }
            EventKind::Error => {
                let error = ApiError::from_event(&v);
                let mut snapshot = self.snapshot("failed");
                snapshot["error"] = json!({"code": error.body(Surface::OpenAi)["error"]["type"],
                    "message": error.message});
                self.emit(
                    out,
                    json!({"type": "response.failed", "response": snapshot}),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sse::Encoder;

    #[test]
    fn canonical_translates_items_tools_and_effort() {
        let (req, stream) = canonical(json!({
            "model": "openai.gpt-5.5", "stream": true, "instructions": "be brief",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
                {"type": "function_call", "call_id": "call_1", "name": "get", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            ],
            "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get"},
            "reasoning": {"effort": "low"}, "max_output_tokens": 50,
        }))
        .unwrap();
        assert!(stream);
        assert_eq!(
            req,
            json!({"model": "openai.gpt-5.5", "max_tokens": 50, "reasoning": "low",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
                    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                ],
                "tools": [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}],
                "tool_choice": {"type": "function", "function": {"name": "get"}}})
        );
        let e = canonical(json!({"model": "m", "input": "x", "text": {}})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("text"));
        let e = canonical(json!({"model": "m", "input": []})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
    }

    #[test]
    fn events_are_numbered_and_items_indexed() {
        let mut enc = ResponseEncoder::new("m".into());
        let mut out = String::new();
        let ev = super::super::test_event;
        for e in [
            ev(EventKind::Start, "", json!({"id": "r1"})),
            ev(EventKind::ReasoningDelta, "think", json!({})),
            ev(EventKind::TextDelta, "Hi", json!({})),
            ev(
                EventKind::ToolCallStart,
                "",
                json!({"index": 0, "id": "call_1", "name": "get"}),
            ),
            ev(EventKind::ToolCallDelta, "{}", json!({"index": 0})),
            ev(EventKind::ToolCallEnd, "", json!({"index": 0})),
            ev(EventKind::Done, "", json!({"stop_reason": "tool_use"})),
        ] {
            enc.encode(&e, &mut out);
        }
        let events: Vec<Value> = out
            .split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| serde_json::from_str(f.split_once("data: ").unwrap().1).unwrap())
            .collect();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["sequence_number"], i, "{e}");
        }
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.completed");
        let output = last["response"]["output"].as_array().unwrap();
        let kinds: Vec<&str> = output.iter().map(|o| o["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["reasoning", "message", "function_call"]);
        assert_eq!(output[1]["content"][0]["text"], "Hi");
        assert_eq!(output[2]["arguments"], "{}");
        assert_eq!(last["response"]["id"], "resp_r1");
    }
}
