/*
 * A third-party C host for the Mantle provider plugin: dlopens the library, checks its ABI
 * version, lists the models and streams a reply on both routes from a local Mantle-compatible
 * server, and checks the error paths (NULL pointers, invalid UTF-8, invalid config, a freed
 * stream). Built by tests/integration/tests/c_host.rs with the system C compiler and run
 * under valgrind in CI.
 *
 * usage: host LIBRARY BASE_URL API_KEY
 * Prints one line per step; exits 0 only when every check passed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mantle_provider.h"

/* Function pointers resolved with dlsym, typed from the header's prototypes. */
#define API(name) static __typeof__(name) *p_##name;
API(mantle_abi_version)
API(mantle_plugin_version)
API(mantle_last_error)
API(mantle_result_name)
API(mantle_string_free)
API(mantle_provider_create)
API(mantle_provider_close)
API(mantle_catalog)
API(mantle_bearer_token)
API(mantle_token_free)
API(mantle_stream_start)
API(mantle_stream_next)
API(mantle_stream_next_batch)
API(mantle_stream_cancel)
API(mantle_stream_free)

static int failures = 0;

#define CHECK(cond, ...)                                                                      \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      failures++;                                                                             \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                    \
      fprintf(stderr, __VA_ARGS__);                                                           \
      fprintf(stderr, " (last error: %s)\n", p_mantle_last_error());                          \
    }                                                                                         \
  } while (0)

static int load(const char *path) {
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
    return 0;
  }
#define RESOLVE(name)                                                                         \
  do {                                                                                        \
    *(void **)(&p_##name) = dlsym(lib, #name);                                                \
    if (!p_##name) {                                                                          \
      fprintf(stderr, "missing symbol %s\n", #name);                                          \
      return 0;                                                                               \
    }                                                                                         \
  } while (0)
  RESOLVE(mantle_abi_version);
  RESOLVE(mantle_plugin_version);
  RESOLVE(mantle_last_error);
  RESOLVE(mantle_result_name);
  RESOLVE(mantle_string_free);
  RESOLVE(mantle_provider_create);
  RESOLVE(mantle_provider_close);
  RESOLVE(mantle_catalog);
  RESOLVE(mantle_bearer_token);
  RESOLVE(mantle_token_free);
  RESOLVE(mantle_stream_start);
  RESOLVE(mantle_stream_next);
  RESOLVE(mantle_stream_next_batch);
  RESOLVE(mantle_stream_cancel);
  RESOLVE(mantle_stream_free);
  /* The library is linked with -z nodelete; it stays mapped for the life of the process, so
   * the handle is deliberately kept (dlclose would be a no-op). */
  return 1;
}

/* Appends n bytes to a NUL-terminated growing buffer. */
static void append(char **text, size_t *cap, size_t *len, const char *bytes, size_t n) {
  if (*len + n + 1 > *cap) {
    while (*len + n + 1 > *cap) *cap *= 2;
    *text = realloc(*text, *cap);
  }
  memcpy(*text + *len, bytes, n);
  *len += n;
  (*text)[*len] = '\0';
}

/* Streams one request to its end; returns the concatenated text (caller frees) or NULL. */
static char *stream_text(uint64_t provider, const char *request, uint32_t *terminal_kind) {
  uint64_t stream = 0;
  mantle_result r = p_mantle_stream_start(provider, request, &stream);
  CHECK(r == MANTLE_OK, "stream_start -> %s", p_mantle_result_name(r));
  if (r != MANTLE_OK) return NULL;
  size_t cap = 256, len = 0;
  char *text = malloc(cap);
  text[0] = '\0';
  int terminals = 0;
  for (int pulls = 0; pulls < 10000; pulls++) {
    mantle_poll poll;
    struct mantle_event ev;
    r = p_mantle_stream_next(stream, 5000, &poll, &ev);
    CHECK(r == MANTLE_OK, "stream_next -> %s", p_mantle_result_name(r));
    if (r != MANTLE_OK || poll == MANTLE_POLL_FINISHED) break;
    if (poll == MANTLE_POLL_PENDING) continue;
    CHECK(ev.json != NULL && ev.json_len > 0 && ev.json[ev.json_len] == '\0',
          "event json present and NUL-terminated");
    if (ev.kind == MANTLE_EVENT_TEXT_DELTA) append(&text, &cap, &len, ev.text, ev.text_len);
    if (ev.kind == MANTLE_EVENT_DONE || ev.kind == MANTLE_EVENT_ERROR) {
      terminals++;
      *terminal_kind = ev.kind;
      if (ev.kind == MANTLE_EVENT_ERROR) fprintf(stderr, "error event: %.*s\n", (int)ev.json_len, ev.json);
    }
  }
  CHECK(terminals == 1, "exactly one terminal event, got %d", terminals);
  r = p_mantle_stream_free(stream);
  CHECK(r == MANTLE_OK, "stream_free -> %s", p_mantle_result_name(r));
  /* Use of a freed stream is an error code, not a crash. */
  mantle_poll poll;
  struct mantle_event ev;
  r = p_mantle_stream_next(stream, 0, &poll, &ev);
  CHECK(r == MANTLE_INVALID_HANDLE, "next on a freed stream -> %s", p_mantle_result_name(r));
  return text;
}

/* Like stream_text, pulling up to 4 events per call with mantle_stream_next_batch (ABI 1.2). */
static char *stream_text_batch(uint64_t provider, const char *request) {
  uint64_t stream = 0;
  mantle_result r = p_mantle_stream_start(provider, request, &stream);
  CHECK(r == MANTLE_OK, "stream_start -> %s", p_mantle_result_name(r));
  if (r != MANTLE_OK) return NULL;
  size_t cap = 256, len = 0;
  char *text = malloc(cap);
  text[0] = '\0';
  int terminals = 0;
  for (int pulls = 0; pulls < 10000; pulls++) {
    mantle_poll poll;
    struct mantle_event events[4];
    size_t count = 0;
    r = p_mantle_stream_next_batch(stream, 5000, events, 4, &count, &poll);
    CHECK(r == MANTLE_OK, "stream_next_batch -> %s", p_mantle_result_name(r));
    if (r != MANTLE_OK || poll == MANTLE_POLL_FINISHED) break;
    CHECK(poll == MANTLE_POLL_EVENT ? count >= 1 && count <= 4 : count == 0, "batch count %zu", count);
    for (size_t i = 0; i < count; i++) {
      const struct mantle_event *ev = &events[i];
      CHECK(ev->json_len > 0 && ev->json[ev->json_len] == '\0', "batch event json NUL-terminated");
      if (ev->kind == MANTLE_EVENT_TEXT_DELTA) append(&text, &cap, &len, ev->text, ev->text_len);
      if (ev->kind == MANTLE_EVENT_DONE || ev->kind == MANTLE_EVENT_ERROR) {
        terminals++;
        CHECK(i == count - 1, "a terminal event ends its batch");
      }
    }
  }
  CHECK(terminals == 1, "exactly one terminal event in batches, got %d", terminals);
  mantle_poll poll;
  struct mantle_event none[1];
  size_t count = 99;
  r = p_mantle_stream_next_batch(stream, 0, none, 0, &count, &poll);
  CHECK(r == MANTLE_INVALID_ARGUMENT && strstr(p_mantle_last_error(), "capacity"),
        "a zero capacity -> %s", p_mantle_result_name(r));
  r = p_mantle_stream_free(stream);
  CHECK(r == MANTLE_OK, "stream_free -> %s", p_mantle_result_name(r));
  return text;
}

static void error_paths(uint64_t provider) {
  uint64_t id = 0;
  mantle_result r = p_mantle_provider_create(NULL, "", &id);
  CHECK(r == MANTLE_INVALID_ARGUMENT && strstr(p_mantle_last_error(), "plugin_config"),
        "NULL config -> %s", p_mantle_result_name(r));
  r = p_mantle_stream_start(provider, "{}", NULL);
  CHECK(r == MANTLE_INVALID_ARGUMENT && strstr(p_mantle_last_error(), "stream_out"),
        "NULL out-pointer -> %s", p_mantle_result_name(r));
  r = p_mantle_provider_create("", "{\"region\": \"us-east-1\xff\"}", &id);
  CHECK(r == MANTLE_INVALID_ARGUMENT && strstr(p_mantle_last_error(), "not valid UTF-8"),
        "invalid UTF-8 -> %s", p_mantle_result_name(r));
  r = p_mantle_provider_create("", "{regoin: 'us-east-1'}", &id);
  CHECK(r == MANTLE_INVALID_CONFIG && strstr(p_mantle_last_error(), "regoin"),
        "unknown config key -> %s", p_mantle_result_name(r));
  r = p_mantle_stream_start(provider, "{\"model\": 5}", &id);
  CHECK(r == MANTLE_INVALID_ARGUMENT && strstr(p_mantle_last_error(), "model"),
        "malformed request -> %s", p_mantle_result_name(r));
  {
    /* 20,000 levels of nesting: refused by a flat scan before any parser recurses. */
    static char deep[20000 + 8];
    memset(deep, '[', 20000);
    deep[20000] = '\0';
    r = p_mantle_provider_create("", deep, &id);
    CHECK(r == MANTLE_INVALID_CONFIG && strstr(p_mantle_last_error(), "limit of 64"),
          "20,000-deep config -> %s", p_mantle_result_name(r));
  }
  r = p_mantle_provider_close(424242);
  CHECK(r == MANTLE_INVALID_HANDLE, "unknown provider -> %s", p_mantle_result_name(r));
  printf("error paths: %s\n", failures ? "FAILED" : "ok");
}

/* Same major, and at least the minor this host was compiled against. */
static int abi_compatible(struct mantle_version have, uint32_t major, uint32_t minor) {
  return have.major == major && have.minor >= minor;
}

/* ABI 1.3: with "include_json": false, text deltas come with an empty (still NUL-terminated)
   json and every other event keeps its JSON. Returns the text. */
static char *stream_text_without_json(uint64_t provider) {
  uint64_t stream = 0;
  mantle_result r = p_mantle_stream_start(provider,
      "{\"model\": \"anthropic.claude-opus-4-7\", \"include_json\": false, "
      "\"messages\": [{\"role\": \"user\", \"content\": \"hello from C without JSON\"}]}",
      &stream);
  CHECK(r == MANTLE_OK, "stream_start without json -> %s", p_mantle_result_name(r));
  if (r != MANTLE_OK) return NULL;
  size_t cap = 256, len = 0;
  char *text = malloc(cap);
  text[0] = '\0';
  int deltas = 0, done = 0;
  for (int pulls = 0; pulls < 10000 && !done; pulls++) {
    mantle_poll poll;
    struct mantle_event events[8];
    size_t count = 0;
    r = p_mantle_stream_next_batch(stream, 5000, events, 8, &count, &poll);
    CHECK(r == MANTLE_OK && poll != MANTLE_POLL_FINISHED, "stream_next_batch -> %s",
          p_mantle_result_name(r));
    if (r != MANTLE_OK || poll == MANTLE_POLL_FINISHED) break;
    for (size_t i = 0; i < count; i++) {
      const struct mantle_event *ev = &events[i];
      if (ev->kind == MANTLE_EVENT_TEXT_DELTA) {
        deltas++;
        CHECK(ev->json_len == 0 && ev->json[0] == '\0', "a text delta without json");
        append(&text, &cap, &len, ev->text, ev->text_len);
      } else {
        CHECK(ev->json_len > 0 && ev->json[0] == '{', "event %u keeps its json", (unsigned)ev->kind);
      }
      if (ev->kind == MANTLE_EVENT_DONE) {
        done = 1;
        CHECK(strstr(ev->json, "\"stop_reason\"") != NULL, "done json: %s", ev->json);
      }
      CHECK(ev->kind != MANTLE_EVENT_ERROR, "error event: %.*s", (int)ev->json_len, ev->json);
    }
  }
  CHECK(done && deltas > 0, "a stream of %d deltas ends with DONE", deltas);
  r = p_mantle_stream_free(stream);
  CHECK(r == MANTLE_OK, "stream_free -> %s", p_mantle_result_name(r));
  return text;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s LIBRARY BASE_URL API_KEY\n", argv[0]);
    return 2;
  }
  if (!load(argv[1])) return 1;

  struct mantle_version v = p_mantle_abi_version();
  if (!abi_compatible(v, MANTLE_ABI_MAJOR, MANTLE_ABI_MINOR)) {
    fprintf(stderr, "refusing library with ABI %u.%u (this host needs %u.>=%u)\n", v.major,
            v.minor, MANTLE_ABI_MAJOR, MANTLE_ABI_MINOR);
    return 1;
  }
  printf("loaded %s, ABI %u.%u\n", p_mantle_plugin_version(), v.major, v.minor);

  char config[1024];
  snprintf(config, sizeof config, "{\"baseUrl\": \"%s\", \"apiKey\": \"%s\"}", argv[2], argv[3]);
  uint64_t provider = 0;
  mantle_result r = p_mantle_provider_create("", config, &provider);
  CHECK(r == MANTLE_OK, "provider_create -> %s", p_mantle_result_name(r));
  if (r != MANTLE_OK) return 1;

  mantle_outcome outcome;
  char *catalog = NULL;
  r = p_mantle_catalog(provider, &outcome, &catalog);
  CHECK(r == MANTLE_OK && outcome == MANTLE_OUTCOME_READY, "catalog -> %s, outcome %u",
        p_mantle_result_name(r), (unsigned)outcome);
  if (catalog) {
    CHECK(strstr(catalog, "\"openai.gpt-oss-120b\"") != NULL, "catalog lists gpt-oss-120b");
    CHECK(strstr(catalog, argv[3]) == NULL, "the key never appears in the catalog");
    printf("catalog: ready, %zu bytes of JSON\n", strlen(catalog));
    p_mantle_string_free(catalog);
  }

  struct mantle_token token;
  r = p_mantle_bearer_token(provider, &token);
  CHECK(r == MANTLE_OK && strcmp(token.token, argv[3]) == 0 && strcmp(token.source, "config") == 0,
        "bearer token from config");
  if (r == MANTLE_OK) {
    p_mantle_token_free(&token);
    CHECK(token.token == NULL && token.source == NULL, "token_free clears the pointers");
    p_mantle_token_free(&token); /* a second free is a no-op */
  }

  const char *routes[][2] = {{"openai.gpt-oss-120b", "openai-completions"},
                             {"anthropic.claude-opus-4-7", "anthropic-messages"}};
  for (int i = 0; i < 2; i++) {
    char request[512];
    snprintf(request, sizeof request,
             "{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"hello from C over %s\"}]}",
             routes[i][0], routes[i][1]);
    uint32_t terminal = 0;
    char *text = stream_text(provider, request, &terminal);
    char expected[256];
    snprintf(expected, sizeof expected, "echo: hello from C over %s", routes[i][1]);
    CHECK(text && strcmp(text, expected) == 0, "%s text: %s", routes[i][1], text ? text : "(null)");
    CHECK(terminal == MANTLE_EVENT_DONE, "%s ends with DONE", routes[i][1]);
    printf("%s: %s\n", routes[i][1], text ? text : "(null)");
    free(text);
  }

  {
    char *text = stream_text_batch(provider,
        "{\"model\": \"openai.gpt-oss-120b\", \"messages\": [{\"role\": \"user\", \"content\": \"hello from C in batches\"}]}");
    CHECK(text && strcmp(text, "echo: hello from C in batches") == 0, "batch text: %s", text ? text : "(null)");
    printf("batch: %s\n", text ? text : "(null)");
    free(text);
  }

  {
    char *text = stream_text_without_json(provider);
    CHECK(text && strcmp(text, "echo: hello from C without JSON") == 0, "text without json: %s",
          text ? text : "(null)");
    printf("without json: %s\n", text ? text : "(null)");
    free(text);
  }

  /* Cancel: the next pull delivers a cancelled error event, then the stream is finished. */
  uint64_t stream = 0;
  r = p_mantle_stream_start(provider,
                            "{\"model\": \"openai.gpt-oss-120b\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}",
                            &stream);
  CHECK(r == MANTLE_OK, "stream_start for cancel");
  r = p_mantle_stream_cancel(stream);
  CHECK(r == MANTLE_OK, "cancel -> %s", p_mantle_result_name(r));
  int saw_cancelled = 0;
  for (int i = 0; i < 100; i++) {
    mantle_poll poll;
    struct mantle_event ev;
    if (p_mantle_stream_next(stream, 1000, &poll, &ev) != MANTLE_OK || poll == MANTLE_POLL_FINISHED) break;
    if (poll == MANTLE_POLL_EVENT && ev.kind == MANTLE_EVENT_ERROR && strstr(ev.json, "\"cancelled\""))
      saw_cancelled = 1;
  }
  CHECK(saw_cancelled, "a cancelled stream ends with a cancelled error event");
  p_mantle_stream_free(stream);
  printf("cancel: %s\n", failures ? "FAILED" : "ok");

  error_paths(provider);

  r = p_mantle_provider_close(provider);
  CHECK(r == MANTLE_OK, "provider_close -> %s", p_mantle_result_name(r));
  r = p_mantle_catalog(provider, &outcome, &catalog);
  CHECK(r == MANTLE_INVALID_HANDLE, "catalog after close -> %s", p_mantle_result_name(r));

  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("all checks passed\n");
  return 0;
}
