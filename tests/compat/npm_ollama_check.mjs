// Drives the OFFICIAL npm `ollama` client against an Ollama-compatible URL and prints
// one JSON object with what each call returned, for tests/compat/test_npm_client.py.
//   node tests/compat/npm_ollama_check.mjs http://127.0.0.1:PORT CHAT_MODEL EMBED_MODEL PULL_MODEL
import { Ollama } from "ollama";

const [url, chatModel, embedModel, pullModel] = process.argv.slice(2);
const client = new Ollama({ host: url });
const out = {};

const chat = await client.chat({ model: chatModel, messages: [{ role: "user", content: "Hello there" }] });
out.chat = { content: chat.message.content, done: chat.done, eval_count: chat.eval_count };

let streamed = "";
let last = null;
for await (const part of await client.chat({ model: chatModel, messages: [{ role: "user", content: "Hi" }], stream: true })) {
  streamed += part.message.content;
  last = part;
}
out.chat_stream = { content: streamed, done: last.done, done_reason: last.done_reason };

const gen = await client.generate({ model: chatModel, prompt: "Why is the sky blue?", options: { num_predict: 5 } });
out.generate = { response: gen.response, done: gen.done, eval_count: gen.eval_count };

const list = await client.list();
out.list = list.models.map((m) => m.name);

const emb = await client.embed({ model: embedModel, input: ["a", "b"] });
out.embed = { count: emb.embeddings.length, dim: emb.embeddings[0].length };

const statuses = [];
for await (const p of await client.pull({ model: pullModel, stream: true })) {
  statuses.push(p.status);
}
out.pull = statuses;

try {
  await client.chat({ model: "does-not-exist", messages: [{ role: "user", content: "x" }] });
  out.missing = null;
} catch (err) {
  out.missing = { message: err.message, status: err.status_code };
}

console.log(JSON.stringify(out));
