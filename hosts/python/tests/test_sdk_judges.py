"""The official `openai` and `anthropic` SDKs as judges.

1. They drive `mantle serve --listen` (upstream: the local Mantle server) with their streaming
   helpers, which validate and accumulate every event, for plain text, reasoning and tool calls,
   and the final accumulated objects are checked; also the non-streaming forms, the models list,
   errors and the front's own API key.
2. Their decoders read the local Mantle server's own streams directly, so the emulator is held
   to what official clients accept.
"""

from __future__ import annotations

import json

import anthropic
import urllib.request
import openai
import pytest

from conftest import TOKEN, start_front

GPT_OSS = "openai.gpt-oss-120b"
GPT_5 = "openai.gpt-5.5"
CLAUDE = "anthropic.claude-opus-4-7"
CLAUDE_ADAPTIVE = "anthropic.claude-sonnet-5"

WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
}
WEATHER_TOOL_RESPONSES = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    "strict": False,
}


def user(text: str) -> list:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def oai(front) -> openai.OpenAI:
    return openai.OpenAI(base_url=front.base_url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def claude(front) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=front.base_url, api_key="unused", max_retries=0)


# -- Chat Completions through the front ---------------------------------------------------------


def test_chat_stream_plain_text(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(
        model=GPT_OSS, messages=user("plain text"), stream_options={"include_usage": True}
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == "echo: plain text"
    choice = final.choices[0]
    assert choice.message.content == "echo: plain text"
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (11, 7, 18)


def test_chat_stream_reasoning_as_reasoning_content(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(model=GPT_OSS, messages=user("why"), reasoning_effort="low") as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert (message.model_extra or {}).get("reasoning_content") == "thinking about: why"
    assert message.content == "echo: why"


def test_chat_stream_tool_call(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(
        model=GPT_OSS, messages=user("Oslo"), tools=[WEATHER_TOOL_OPENAI], tool_choice="required"
    ) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"text": "Oslo"}
    assert calls[0].id


def test_chat_non_streaming(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model=GPT_OSS, messages=user("whole"))
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "echo: whole"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 18


def test_chat_on_the_anthropic_route(oai: openai.OpenAI) -> None:
    """A Claude model through the OpenAI front: the plugin translates to Messages upstream."""
    with oai.chat.completions.stream(model=CLAUDE, messages=user("cross")) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "echo: cross"


def test_chat_errors_in_openai_shape(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="openai.no-such-model", messages=user("x"))
    assert e.value.status_code == 404
    assert "does not exist" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=GPT_OSS, messages=[])
    assert e.value.status_code == 400
    assert isinstance(e.value.body, dict) and e.value.body.get("param") == "messages"
    # GPT-5.x is served only on Mantle's Responses API; the plugin routes it there, so the
    # front's Chat Completions serves it anyway.
    assert oai.chat.completions.create(model=GPT_5, messages=user("x")).choices[0].message.content == "echo: x"


def test_models_list(oai: openai.OpenAI, front) -> None:
    ids = [m.id for m in oai.models.list()]
    assert GPT_OSS in ids and GPT_5 in ids
    with urllib.request.urlopen(front.base_url + "/v1/models") as r:
        assert r.headers["x-mantle-catalog-outcome"] == "ready"
        assert r.headers["x-mantle-plugin-version"]


# -- Anthropic Messages through the front -------------------------------------------------------


def test_messages_stream_plain_text(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model=CLAUDE, max_tokens=256, messages=user("plain")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: plain"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == "echo: plain"
    assert final.stop_reason == "end_turn"
    assert final.role == "assistant"
    assert final.usage.output_tokens == 9
    assert final.usage.input_tokens == 12


def test_messages_stream_thinking(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=CLAUDE_ADAPTIVE, max_tokens=2048, messages=user("think"), thinking={"type": "adaptive"}
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "thinking about: think"
    assert final.content[0].signature == "mock-signature"
    assert final.content[1].text == "echo: think"


def test_messages_stream_tool_use(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=CLAUDE, max_tokens=256, messages=user("Bergen"), tools=[WEATHER_TOOL_ANTHROPIC],
        tool_choice={"type": "any"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    blocks = [b for b in final.content if b.type == "tool_use"]
    assert len(blocks) == 1
    assert blocks[0].name == "get_weather"
    assert blocks[0].input == {"text": "Bergen"}
    assert blocks[0].id


def test_messages_tool_result_turn(claude: anthropic.Anthropic) -> None:
    """A second turn carrying the tool result is translated and accepted upstream."""
    message = claude.messages.create(
        model=CLAUDE, max_tokens=256, tools=[WEATHER_TOOL_ANTHROPIC],
        messages=[
            {"role": "user", "content": "Bergen"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"text": "Bergen"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"},
                                         {"type": "text", "text": "and tomorrow?"}]},
        ],
    )
    assert message.content[0].text == "echo: and tomorrow?"


def test_messages_non_streaming(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model=CLAUDE, max_tokens=256, system="be brief", messages=user("whole"))
    assert message.type == "message"
    assert message.content[0].text == "echo: whole"
    assert message.stop_reason == "end_turn"


def test_messages_errors_in_anthropic_shape(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model=CLAUDE, max_tokens=10, messages=user("x"), extra_body={"top_k": 5})
    assert e.value.status_code == 400
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "top_k" in e.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="openai.no-such-model", max_tokens=10, messages=user("x"))


# -- Responses through the front ----------------------------------------------------------------


def test_responses_stream_plain_text(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model=GPT_5, input="plain") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "echo: plain"
    assert final.output_text == "echo: plain"
    assert final.status == "completed"
    assert final.usage is not None and final.usage.total_tokens == 18


def test_responses_stream_reasoning_and_tool(oai: openai.OpenAI) -> None:
    with oai.responses.stream(
        model=GPT_5, input="Oslo", reasoning={"effort": "low"}, tools=[WEATHER_TOOL_RESPONSES],
        tool_choice="required",
    ) as stream:
        final = stream.get_final_response()
    kinds = [item.type for item in final.output]
    assert kinds == ["reasoning", "function_call"]
    assert final.output[0].content[0].text == "thinking about: Oslo"
    call = final.output[1]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"text": "Oslo"}


def test_responses_for_a_chat_completions_model(oai: openai.OpenAI) -> None:
    """The front's Responses surface serves any catalog model; the plugin picks the upstream."""
    with oai.responses.stream(model=GPT_OSS, input="cross") as stream:
        final = stream.get_final_response()
    assert final.output_text == "echo: cross"


def test_responses_non_streaming(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model=GPT_5, input="whole", instructions="be brief")
    assert response.output_text == "echo: whole"
    assert response.status == "completed"


# -- The front's own key ------------------------------------------------------------------------


def test_api_key_is_required_when_set(tmp_path, mock, plugin_path) -> None:
    front = start_front(tmp_path, mock, plugin_path, api_key="front-secret")
    try:
        wrong = openai.OpenAI(base_url=front.base_url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.chat.completions.create(model=GPT_OSS, messages=user("x"))
        wrong_claude = anthropic.Anthropic(base_url=front.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError):
            wrong_claude.messages.create(model=CLAUDE, max_tokens=5, messages=user("x"))
        right = openai.OpenAI(base_url=front.base_url + "/v1", api_key="front-secret", max_retries=0)
        assert right.chat.completions.create(model=GPT_OSS, messages=user("k")).choices[0].message.content == "echo: k"
        right_claude = anthropic.Anthropic(base_url=front.base_url, api_key="front-secret", max_retries=0)
        assert right_claude.messages.create(model=CLAUDE, max_tokens=5, messages=user("k")).content[0].text == "echo: k"
        assert "front-secret" not in "".join(front.lines) + "".join(front.stderr)
    finally:
        front.stop()


# -- The SDKs' decoders on the local Mantle server's own streams --------------------------------


@pytest.fixture(scope="module")
def mantle_openai(mock) -> openai.OpenAI:
    return openai.OpenAI(base_url=mock.base_url, api_key=TOKEN, max_retries=0)


@pytest.fixture(scope="module")
def mantle_responses(mock) -> openai.OpenAI:
    return openai.OpenAI(base_url=mock.base_url.removesuffix("/v1") + "/openai/v1", api_key=TOKEN, max_retries=0)


@pytest.fixture(scope="module")
def mantle_anthropic(mock) -> anthropic.Anthropic:
    # Mantle takes `Authorization: Bearer` (auth_token), not x-api-key.
    return anthropic.Anthropic(base_url=mock.base_url.removesuffix("/v1") + "/anthropic", auth_token=TOKEN,
                               max_retries=0)


def test_emulator_chat_streams_pass_the_openai_sdk(mantle_openai: openai.OpenAI) -> None:
    with mantle_openai.chat.completions.stream(model=GPT_OSS, messages=user("direct")) as stream:
        assert stream.get_final_completion().choices[0].message.content == "echo: direct"
    with mantle_openai.chat.completions.stream(
        model=GPT_OSS, messages=user("direct"), reasoning_effort="high", tools=[WEATHER_TOOL_OPENAI],
        tool_choice="required",
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert (message.model_extra or {}).get("reasoning_content") == "thinking about: direct"
    assert message.tool_calls[0].function.name == "get_weather"
    assert json.loads(message.tool_calls[0].function.arguments) == {"text": "direct"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_emulator_messages_streams_pass_the_anthropic_sdk(mantle_anthropic: anthropic.Anthropic) -> None:
    with mantle_anthropic.messages.stream(model=CLAUDE, max_tokens=64, messages=user("direct")) as stream:
        assert stream.get_final_message().content[0].text == "echo: direct"
    with mantle_anthropic.messages.stream(
        model=CLAUDE_ADAPTIVE, max_tokens=4096, messages=user("direct"), thinking={"type": "adaptive"},
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].signature == "mock-signature"
    with mantle_anthropic.messages.stream(
        model=CLAUDE, max_tokens=64, messages=user("direct"), tools=[WEATHER_TOOL_ANTHROPIC],
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"text": "direct"}


def test_emulator_responses_streams_pass_the_openai_sdk(mantle_responses: openai.OpenAI) -> None:
    with mantle_responses.responses.stream(model=GPT_5, input="direct") as stream:
        assert stream.get_final_response().output_text == "echo: direct"
    with mantle_responses.responses.stream(
        model=GPT_5, input="direct", reasoning={"effort": "low"}, tools=[WEATHER_TOOL_RESPONSES],
        tool_choice="required",
    ) as stream:
        final = stream.get_final_response()
    assert [i.type for i in final.output] == ["reasoning", "function_call"]
    assert json.loads(final.output[1].arguments) == {"text": "direct"}


def test_emulator_refuses_gpt5_on_chat_completions_as_mantle_does(mantle_openai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        mantle_openai.chat.completions.create(model=GPT_5, messages=user("x"))
    assert "does not support" in e.value.message
