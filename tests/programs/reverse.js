// A subprocess model in JavaScript: reverses the input's text.
const readline = require("readline");
const lines = readline.createInterface({ input: process.stdin });
console.log(JSON.stringify({ ready: true }));
lines.on("line", (line) => {
  const job = JSON.parse(line);
  process.stderr.write(`reversing ${job.input.text.length} characters\n`);
  const text = [...job.input.text].reverse().join("");
  console.log(JSON.stringify({ id: job.id, output: { text } }));
});
