//! The canonical request translated to an OpenAI Responses body (`openai-responses`, spec §7):
//! system/developer messages become `instructions`, the rest `input` items (messages with
//! `input_text`/`input_image`/`output_text` parts, `function_call` and `function_call_output`
//! items), tools flattened to Responses function tools, the reasoning level to
//! `reasoning.effort`, `max_tokens` to `max_output_tokens`, `stream: true`.

use serde_json::{json, Map, Value};

use super::{CanonicalRequest, ReasoningLevel};
use crate::catalog::ModelRow;

/// The Responses body for `req` on `model`.
pub fn responses_body(req: &CanonicalRequest, model: &ModelRow) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    let (instructions, input) = translate_messages(
        req.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]),
    );
    if !instructions.is_empty() {
        body.insert("instructions".into(), json!(instructions.join("\n\n")));
    }
    body.insert("input".into(), Value::Array(input));
    if let Some(max) = req.body.get("max_tokens") {
        body.insert("max_output_tokens".into(), max.clone());
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = req.body.get(key) {
            body.insert(key.into(), v.clone());
        }
    }
    if let Some(effort) = effort(req.reasoning, model) {
        body.insert("reasoning".into(), json!({"effort": effort}));
    }
    if let Some(Value::Array(tools)) = req.body.get("tools") {
        let tools: Vec<Value> = tools.iter().map(function_tool).collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = req.body.get("tool_choice") {
        let translated = match choice {
            Value::String(_) => Some(choice.clone()),
            Value::Object(o) => o
                .get("function")
                .map(|f| json!({"type": "function", "name": f["name"]})),
            _ => None,
        };
        if let Some(t) = translated {
            body.insert("tool_choice".into(), t);
        }
    }
    body.insert("stream".into(), json!(true));
    Value::Object(body)
}

/// `reasoning.effort` for a reasoning model: off sends none; minimal and xhigh pass as given
/// (GPT-5.x takes both); max is `xhigh`.
fn effort(level: Option<ReasoningLevel>, model: &ModelRow) -> Option<&'static str> {
    if !model.reasoning {
        return None;
    }
    Some(match level? {
        ReasoningLevel::Off => return None,
        ReasoningLevel::Minimal => "minimal",
        ReasoningLevel::Low => "low",
        ReasoningLevel::Medium => "medium",
        ReasoningLevel::High => "high",
        ReasoningLevel::XHigh | ReasoningLevel::Max => "xhigh",
    })
}

/// A Chat Completions tool (`{type: "function", function: {...}}`) as a Responses tool.
fn function_tool(tool: &Value) -> Value {
    let f = tool.get("function").unwrap_or(tool);
    let mut out = json!({"type": "function", "name": f["name"]});
    for key in ["description", "parameters", "strict"] {
        if let Some(v) = f.get(key) {
            out[key] = v.clone();
        }
    }
    out
}

/// Content parts of a message as Responses parts (`input_*` for user, `output_text` for the
/// assistant).
fn parts(content: &Value, assistant: bool) -> Vec<Value> {
    let text_type = if assistant {
        "output_text"
    } else {
        "input_text"
    };
    match content {
        Value::String(s) => vec![json!({"type": text_type, "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p["type"].as_str()? {
                "text" => Some(json!({"type": text_type, "text": p["text"]})),
                "image_url" if !assistant => {
                    let url = p["image_url"]["url"]
                        .as_str()
                        .or_else(|| p["image_url"].as_str())?;
                    Some(json!({"type": "input_image", "image_url": url}))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// `(instructions, input items)` from canonical messages.
fn translate_messages(messages: &[Value]) -> (Vec<String>, Vec<Value>) {
    let mut instructions = Vec::new();
    let mut input = Vec::new();
    for m in messages {
        match m["role"].as_str().unwrap_or_default() {
            "system" | "developer" => instructions.push(text_of(&m["content"])),
            "assistant" => {
                let content = parts(&m["content"], true);
                if !content.is_empty() {
                    input.push(json!({"role": "assistant", "content": content}));
                }
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    input.push(json!({
                        "type": "function_call",
                        "call_id": call["id"],
                        "name": call["function"]["name"],
                        "arguments": call["function"]["arguments"].as_str().unwrap_or("{}"),
                    }));
                }
            }
            "tool" => input.push(json!({
                "type": "function_call_output",
                "call_id": m["tool_call_id"],
                "output": text_of(&m["content"]),
            })),
            _ => input.push(json!({"role": "user", "content": parts(&m["content"], false)})),
        }
    }
    (instructions, input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::discovered_row;

    #[test]
    fn a_canonical_request_becomes_a_responses_body() {
        let req = CanonicalRequest::parse(
            &json!({
                "model": "openai.gpt-5.5",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ]},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}},
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
                    {"role": "assistant", "content": "A cat."},
                ],
                "tools": [{"type": "function", "function": {"name": "look", "description": "d",
                    "parameters": {"type": "object"}}}],
                "tool_choice": {"type": "function", "function": {"name": "look"}},
                "max_tokens": 900,
                "temperature": 0.5,
                "reasoning": "max",
                "headers": {"x-a": "b"},
            })
            .to_string(),
        )
        .unwrap();
        let body = responses_body(&req, &discovered_row("openai.gpt-5.5"));
        assert_eq!(
            body,
            json!({
                "model": "openai.gpt-5.5",
                "instructions": "be brief",
                "input": [
                    {"role": "user", "content": [
                        {"type": "input_text", "text": "what is this?"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                    ]},
                    {"type": "function_call", "call_id": "call_1", "name": "look", "arguments": "{\"x\":1}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
                    {"role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
                ],
                "max_output_tokens": 900,
                "temperature": 0.5,
                "reasoning": {"effort": "xhigh"},
                "tools": [{"type": "function", "name": "look", "description": "d",
                    "parameters": {"type": "object"}}],
                "tool_choice": {"type": "function", "name": "look"},
                "stream": true,
            })
        );
    }

    #[test]
    fn reasoning_effort_only_for_reasoning_models_and_not_when_off() {
        let req = |level: &str| {
            CanonicalRequest::parse(
                &json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning": level})
                    .to_string(),
            )
            .unwrap()
        };
        let gpt5 = discovered_row("openai.gpt-5.5");
        assert_eq!(
            responses_body(&req("minimal"), &gpt5)["reasoning"],
            json!({"effort": "minimal"})
        );
        assert!(responses_body(&req("off"), &gpt5)
            .get("reasoning")
            .is_none());
        assert!(responses_body(&req("high"), &discovered_row("x.plain"))
            .get("reasoning")
            .is_none());
    }

    #[test]
    fn tool_choice_strings_parts_and_system_text_translate() {
        let r = crate::request::test_support::req(json!({
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}]},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
            ],
            "tool_choice": "required",
        }));
        let b = responses_body(&r, &discovered_row("openai.gpt-5.5"));
        assert_eq!(b["instructions"], json!("be brief"));
        assert_eq!(b["tool_choice"], json!("required"));
        let assistant = b["input"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["role"] == "assistant")
            .unwrap();
        // An assistant turn carries text only: images are the user's.
        assert_eq!(
            assistant["content"],
            json!([{"type": "output_text", "text": "look"}])
        );
    }
}
