// Drives the OFFICIAL npm `ollama` client against an Ollama-compatible URL and prints, as its LAST
// line, one JSON object with what each call returned, for tests/compat/test_npm_client.py.
//   node tests/compat/npm_ollama_check.mjs http://127.0.0.1:PORT CHAT_MODEL EMBED_MODEL PULL_MODEL MANAGE_MODEL
//
// Every public method of the client's `Ollama` class is called (node_modules/ollama/dist/index.d.ts):
// generate, chat, create, pull, push, delete, copy, list, show, embed, embeddings, ps, version, abort,
// encodeImage and systemone. A call that throws is recorded as {error, status, name} so the test
// reports every failing method at once. Not called, on purpose:
//   * webSearch, webFetch: they always post to https://ollama.com/api/web_search|web_fetch with an
//     ollama.com API key, whatever `host` says; a local server (Ollama's or the proxy) never sees them.
// The client's own diagnostics ("Getting text from response") go to stdout, hence "LAST line".
import { Ollama } from "ollama";

const [url, chatModel, embedModel, pullModel, manageModel] = process.argv.slice(2);
const client = new Ollama({ host: url });
const out = {};
const COPY = "npm-copy";
const BRIEF = "npm-brief";

async function call(name, fn) {
  try {
    out[name] = await fn();
  } catch (err) {
    out[name] = { error: String(err.message ?? err), status: err.status_code ?? null, name: err.name ?? null };
  }
}

const names = async () => (await client.list()).models.map((m) => m.name);
const collect = async (stream, pick) => {
  const parts = [];
  for await (const part of stream) parts.push(pick(part));
  return parts;
};

await call("version", async () => client.version());

await call("chat", async () => {
  const r = await client.chat({ model: chatModel, messages: [{ role: "user", content: "Hello there" }] });
  return { role: r.message.role, content: r.message.content, done: r.done, eval_count: r.eval_count };
});
await call("chat_stream", async () => {
  const stream = await client.chat({ model: chatModel, messages: [{ role: "user", content: "Hi" }], stream: true });
  let content = "";
  let last = null;
  for await (const part of stream) {
    content += part.message.content;
    last = part;
  }
  return { content, done: last.done, done_reason: last.done_reason };
});

await call("generate", async () => {
  const r = await client.generate({ model: chatModel, prompt: "Why is the sky blue?", options: { num_predict: 5 } });
  return { response: r.response, done: r.done, eval_count: r.eval_count, model: r.model };
});
await call("generate_stream", async () => {
  const stream = await client.generate({ model: chatModel, prompt: "Hi", options: { num_predict: 5 }, stream: true });
  const parts = await collect(stream, (p) => p);
  const last = parts[parts.length - 1];
  return { response: parts.map((p) => p.response).join(""), done: last.done, eval_count: last.eval_count };
});

await call("list", async () => {
  const models = (await client.list()).models;
  const fields = ["name", "model", "modified_at", "size", "digest", "details"];
  return { names: models.map((m) => m.name), complete: models.every((m) => fields.every((f) => f in m)) };
});

await call("show", async () => {
  const r = await client.show({ model: chatModel });
  return {
    format: r.details?.format,
    family: typeof r.details?.family,
    parameter_size: typeof r.details?.parameter_size,
    model_info: r.model_info && typeof r.model_info === "object" ? Object.keys(r.model_info).length : null,
    architecture: r.model_info?.["general.architecture"] ?? null,
    capabilities: r.capabilities ?? null,
    modelfile: r.modelfile,
  };
});

// After the inference above the chat model is loaded: ps lists it, as Ollama's ProcessModelResponse.
await call("ps", async () =>
  (await client.ps()).models.map((m) => ({
    name: m.name,
    size: m.size,
    size_vram: m.size_vram,
    expires_at: m.expires_at,
    expires_ms: Date.parse(m.expires_at),
    details: typeof m.details,
  })),
);

await call("embed", async () => {
  const r = await client.embed({ model: embedModel, input: ["a", "b"] });
  return { count: r.embeddings.length, dim: r.embeddings[0].length };
});
await call("embeddings", async () => (await client.embeddings({ model: embedModel, prompt: "a" })).embedding.length);

await call("pull_stream", async () =>
  collect(await client.pull({ model: pullModel, stream: true }), (p) => p.status),
);
await call("pull", async () => client.pull({ model: pullModel }));

// Management: on an Ollama host (the simulator in every topology; llama.cpp hosts cannot copy or create).
await call("copy", async () => ({ reply: await client.copy({ source: manageModel, destination: COPY }), names: await names() }));
await call("create_stream", async () =>
  collect(await client.create({ model: BRIEF, from: manageModel, system: "Be brief.", stream: true }), (p) => p.status),
);
await call("show_created", async () => (await client.show({ model: BRIEF })).system ?? null);
await call("push", async () => client.push({ model: BRIEF }));
await call("push_stream", async () => collect(await client.push({ model: BRIEF, stream: true }), (p) => p.status));
await call("delete", async () => ({
  replies: [await client.delete({ model: COPY }), await client.delete({ model: BRIEF })],
  names: await names(),
}));
await call("delete_missing", async () => client.delete({ model: COPY }));
await call("show_missing", async () => client.show({ model: "does-not-exist" }));

// Client-side only (no request): Uint8Array -> base64, as images in generate/chat are sent.
await call("encodeImage", async () => client.encodeImage(new Uint8Array([1, 2, 3])));

// abort() ends every stream of this client: the loop throws AbortError; the proxy must then still serve.
await call("abort", async () => {
  const stream = await client.generate({ model: chatModel, prompt: "Count to a hundred", options: { num_predict: 64 }, stream: true });
  let parts = 0;
  try {
    for await (const part of stream) {
      parts += 1;
      if (parts === 1) client.abort();
      if (part.done) return { parts, error: null };
    }
    return { parts, error: null };
  } catch (err) {
    return { parts, error: err.name };
  }
});
await call("after_abort", async () => {
  const r = await client.generate({ model: chatModel, prompt: "Hi", options: { num_predict: 3 } });
  return { done: r.done, eval_count: r.eval_count };
});

// POST /v1/systemone: Ollama >= 0.35's scoring endpoint, outside the API the proxy implements: a clean 404.
await call("systemone", async () =>
  client.systemone({ model: chatModel, state: "x", questions: { q: { type: "noul", instructions: "Is it?" } } }),
);

await call("missing", async () => client.chat({ model: "does-not-exist", messages: [{ role: "user", content: "x" }] }));

console.log(JSON.stringify(out));
