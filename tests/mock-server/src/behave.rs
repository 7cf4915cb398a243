//! What the server answers when no script is queued, as a real model would: it echoes the last
//! user text, reasons first when the request asks for reasoning, and calls a tool when the
//! request forces one. Each surface gets its own well-formed stream, checked by the official
//! SDKs' decoders in `hosts/python/tests/test_sdk_judges.py`.
//!
//! - Reasoning is asked for by `reasoning_effort` (Chat Completions, not `none`), `thinking`
//!   `enabled`/`adaptive` (Messages) or `reasoning.effort` (Responses, not `none`); the model
//!   then first thinks `thinking about: <user text>` (Messages: with a signature).
//! - A tool is forced by `tool_choice` `required` or a named function (Chat Completions,
//!   Responses) or `any`/`tool` (Messages); the model then calls the named (or first) tool with
//!   `{"text": "<user text>"}` instead of answering, and stops for tool use.

use serde_json::{json, Value};

use crate::{
    anthropic_event, anthropic_text_stream, echo_text, openai_text_stream, responses_event,
    responses_text_stream, sse_data, Route, Step,
};

/// What the model does for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The user's last text (what is echoed).
    pub user_text: String,
    /// Reasoning to emit first, when asked for.
    pub reasoning: Option<String>,
    /// The tool to call (name), when one is forced.
    pub tool: Option<String>,
}

impl Plan {
    /// The plan for a request on a route.
    pub fn of(route: Route, request: &Value) -> Plan {
        let echo = echo_text(request);
        let user_text = echo.strip_prefix("echo: ").unwrap_or(&echo).to_string();
        let reasoning =
            reasoning_asked(route, request).then(|| format!("thinking about: {user_text}"));
        Plan {
            tool: forced_tool(route, request),
            user_text,
            reasoning,
        }
    }

    /// True when the plain echo stream says it all.
    pub fn is_plain(&self) -> bool {
        self.reasoning.is_none() && self.tool.is_none()
    }

    /// The tool call's JSON arguments.
    pub fn arguments(&self) -> String {
        json!({"text": self.user_text}).to_string()
    }
}

fn reasoning_asked(route: Route, request: &Value) -> bool {
    match route {
        Route::ChatCompletions => request["reasoning_effort"]
            .as_str()
            .is_some_and(|e| e != "none"),
        Route::AnthropicMessages => {
            matches!(
                request["thinking"]["type"].as_str(),
                Some("enabled" | "adaptive")
            )
        }
        Route::Responses => request["reasoning"]["effort"]
            .as_str()
            .is_some_and(|e| e != "none"),
        Route::Models => false,
    }
}

fn first_tool_name(route: Route, request: &Value) -> Option<String> {
    let tool = request["tools"].as_array()?.first()?;
    let name = match route {
        Route::ChatCompletions => &tool["function"]["name"],
        _ => &tool["name"],
    };
    name.as_str().map(str::to_string)
}

fn forced_tool(route: Route, request: &Value) -> Option<String> {
    let choice = &request["tool_choice"];
    let named = match route {
        Route::ChatCompletions => choice["function"]["name"].as_str(),
        Route::AnthropicMessages if choice["type"] == "tool" => choice["name"].as_str(),
        Route::Responses if choice["type"] == "function" => choice["name"].as_str(),
        _ => None,
    };
    if let Some(name) = named {
        return Some(name.to_string());
    }
    let forced = match route {
        Route::ChatCompletions | Route::Responses => choice == "required",
        Route::AnthropicMessages => choice["type"] == "any",
        Route::Models => false,
    };
    forced.then(|| first_tool_name(route, request)).flatten()
}

/// The stream for `plan` on `route`, text split every `chunk_chars`.
pub fn stream_for(route: Route, model: &str, plan: &Plan, chunk_chars: usize) -> Vec<Step> {
    let text = format!("echo: {}", plan.user_text);
    if plan.is_plain() {
        return match route {
            Route::AnthropicMessages => anthropic_text_stream(model, &text, chunk_chars),
            Route::Responses => responses_text_stream(model, &text, chunk_chars),
            _ => openai_text_stream(model, &text, chunk_chars),
        };
    }
    match route {
        Route::AnthropicMessages => anthropic_stream(model, plan, &text),
        Route::Responses => responses_stream(model, plan, &text),
        _ => openai_stream(model, plan, &text),
    }
}

fn openai_stream(model: &str, plan: &Plan, text: &str) -> Vec<Step> {
    let chunk = |delta: Value, finish: Value| {
        sse_data(
            &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut steps = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if let Some(r) = &plan.reasoning {
        steps.push(chunk(json!({"reasoning_content": r}), Value::Null));
    }
    let finish = match &plan.tool {
        Some(name) => {
            steps.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_mock", "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            steps.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": plan.arguments()}}]}),
                Value::Null,
            ));
            "tool_calls"
        }
        None => {
            steps.push(chunk(json!({"content": text}), Value::Null));
            "stop"
        }
    };
    steps.push(chunk(json!({}), json!(finish)));
    steps.push(sse_data(
        &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
        "created": 0, "model": model, "choices": [],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
            "completion_tokens_details": {"reasoning_tokens": 3}}}),
    ));
    steps.push(Step::Bytes(b"data: [DONE]\n\n".to_vec()));
    steps
}

fn anthropic_stream(model: &str, plan: &Plan, text: &str) -> Vec<Step> {
    let block = |index: usize, block: Value| {
        anthropic_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        )
    };
    let delta = |index: usize, delta: Value| {
        anthropic_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    };
    let stop = |index: usize| {
        anthropic_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        )
    };
    let mut steps = vec![anthropic_event(
        "message_start",
        &json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    )];
    let mut index = 0;
    if let Some(r) = &plan.reasoning {
        steps.push(block(
            index,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
        ));
        steps.push(delta(
            index,
            json!({"type": "thinking_delta", "thinking": r}),
        ));
        steps.push(delta(
            index,
            json!({"type": "signature_delta", "signature": "mock-signature"}),
        ));
        steps.push(stop(index));
        index += 1;
    }
    let reason = match &plan.tool {
        Some(name) => {
            steps.push(block(
                index,
                json!({"type": "tool_use", "id": "toolu_mock", "name": name, "input": {}}),
            ));
            steps.push(delta(
                index,
                json!({"type": "input_json_delta", "partial_json": plan.arguments()}),
            ));
            steps.push(stop(index));
            "tool_use"
        }
        None => {
            steps.push(block(index, json!({"type": "text", "text": ""})));
            steps.push(delta(index, json!({"type": "text_delta", "text": text})));
            steps.push(stop(index));
            "end_turn"
        }
    };
    steps.push(anthropic_event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
            "usage": {"output_tokens": 9}}),
    ));
    steps.push(anthropic_event(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    steps
}

fn responses_stream(model: &str, plan: &Plan, text: &str) -> Vec<Step> {
    let mut seq = 0u64;
    let mut steps = Vec::new();
    let mut emit = |mut payload: Value| {
        payload["sequence_number"] = json!(seq);
        seq += 1;
        steps.push(responses_event(&payload));
    };
    let snapshot = |status: &str, output: Value| {
        json!({"id": "resp_mock", "object": "response", "created_at": 0, "model": model,
            "status": status, "output": output})
    };
    emit(json!({"type": "response.created", "response": snapshot("in_progress", json!([]))}));
    emit(json!({"type": "response.in_progress", "response": snapshot("in_progress", json!([]))}));
    let mut output = Vec::new();
    if let Some(r) = &plan.reasoning {
        let i = output.len();
        emit(
            json!({"type": "response.output_item.added", "output_index": i,
            "item": {"id": "rs_mock", "type": "reasoning", "summary": [], "content": []}}),
        );
        emit(
            json!({"type": "response.reasoning_text.delta", "item_id": "rs_mock",
            "output_index": i, "content_index": 0, "delta": r}),
        );
        emit(
            json!({"type": "response.reasoning_text.done", "item_id": "rs_mock",
            "output_index": i, "content_index": 0, "text": r}),
        );
        let item = json!({"id": "rs_mock", "type": "reasoning", "summary": [],
            "content": [{"type": "reasoning_text", "text": r}]});
        emit(json!({"type": "response.output_item.done", "output_index": i, "item": item}));
        output.push(item);
    }
    let i = output.len();
    match &plan.tool {
        Some(name) => {
            let args = plan.arguments();
            emit(
                json!({"type": "response.output_item.added", "output_index": i,
                "item": {"id": "fc_mock", "type": "function_call", "status": "in_progress",
                    "call_id": "call_mock", "name": name, "arguments": ""}}),
            );
            emit(
                json!({"type": "response.function_call_arguments.delta", "item_id": "fc_mock",
                "output_index": i, "delta": args}),
            );
            emit(
                json!({"type": "response.function_call_arguments.done", "item_id": "fc_mock",
                "output_index": i, "arguments": args}),
            );
            let item = json!({"id": "fc_mock", "type": "function_call", "status": "completed",
                "call_id": "call_mock", "name": name, "arguments": args});
            emit(json!({"type": "response.output_item.done", "output_index": i, "item": item}));
            output.push(item);
        }
        None => {
            emit(
                json!({"type": "response.output_item.added", "output_index": i,
                "item": {"id": "msg_mock", "type": "message", "role": "assistant",
                    "status": "in_progress", "content": []}}),
            );
            emit(
                json!({"type": "response.content_part.added", "item_id": "msg_mock",
                "output_index": i, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            emit(
                json!({"type": "response.output_text.delta", "item_id": "msg_mock",
                "output_index": i, "content_index": 0, "delta": text}),
            );
            emit(
                json!({"type": "response.output_text.done", "item_id": "msg_mock",
                "output_index": i, "content_index": 0, "text": text}),
            );
            let part = json!({"type": "output_text", "text": text, "annotations": []});
            emit(
                json!({"type": "response.content_part.done", "item_id": "msg_mock",
                "output_index": i, "content_index": 0, "part": part}),
            );
            let item = json!({"id": "msg_mock", "type": "message", "role": "assistant",
                "status": "completed", "content": [part]});
            emit(json!({"type": "response.output_item.done", "output_index": i, "item": item}));
            output.push(item);
        }
    }
    let mut done = snapshot("completed", Value::Array(output));
    done["usage"] = json!({"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 18});
    emit(json!({"type": "response.completed", "response": done}));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_what_the_request_asks() {
        let chat = json!({"messages": [{"role": "user", "content": "hi"}],
            "reasoning_effort": "low",
            "tools": [{"type": "function", "function": {"name": "get"}}], "tool_choice": "required"});
        assert_eq!(
            Plan::of(Route::ChatCompletions, &chat),
            Plan {
                user_text: "hi".into(),
                reasoning: Some("thinking about: hi".into()),
                tool: Some("get".into())
            }
        );
        let plain = json!({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "none",
            "tools": [{"type": "function", "function": {"name": "get"}}], "tool_choice": "auto"});
        assert!(Plan::of(Route::ChatCompletions, &plain).is_plain());
        let messages = json!({"messages": [{"role": "user", "content": "hi"}],
            "thinking": {"type": "adaptive"},
            "tools": [{"name": "a"}, {"name": "b"}], "tool_choice": {"type": "tool", "name": "b"}});
        let plan = Plan::of(Route::AnthropicMessages, &messages);
        assert_eq!(plan.tool.as_deref(), Some("b"));
        assert!(plan.reasoning.is_some());
        let responses = json!({"input": "hi", "reasoning": {"effort": "high"},
            "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "f"}});
        let plan = Plan::of(Route::Responses, &responses);
        assert_eq!(plan.tool.as_deref(), Some("f"));
        assert_eq!(plan.arguments(), r#"{"text":"hi"}"#);
    }
}
