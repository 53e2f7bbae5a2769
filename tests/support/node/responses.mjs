// The official Node SDK's Responses API against a gateway: argv = base URL, API key, model.
// Prints one JSON line with what the SDK parsed, for the Python test to check.
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
const question = "What is fair scheduling?";

const created = await client.responses.create({
  model,
  instructions: "Be brief.",
  input: [{ role: "user", content: [{ type: "input_text", text: question }] }],
});

const types = [];
let deltas = "";
let final = null;
const stream = await client.responses.create({ model, input: question, stream: true });
for await (const event of stream) {
  types.push(event.type);
  if (event.type === "response.output_text.delta") deltas += event.delta;
  if (event.type === "response.completed") final = event.response;
}

let error = null;
try {
  await client.responses.create({ model, input: question, tools: [{ type: "web_search" }] });
} catch (caught) {
  error = { status: caught.status, param: caught.param, type: caught.type };
}

const shown = (response) => ({
  id: response.id,
  status: response.status,
  // the SDK adds output_text to what create() returns; a streamed response has only its items
  output_text: response.output_text ?? response.output.map((i) => i.content[0].text).join(""),
  output_types: response.output.map((item) => item.type),
  usage: response.usage,
  receipt: response.receipt,
});
console.log(JSON.stringify({ created: shown(created), stream: { types, deltas, final: shown(final) }, error }));
