// Interop helper for cli/tests/typage.rs: typage (npm `age-encryption`, a second age
// implementation, not sealgate's) encrypts or decrypts one value.
//
//   TYPAGE_INDEX=…/node_modules/age-encryption/dist/index.js TYPAGE_KEY=KEY node typage.mjs MODE
//
// MODE is `encrypt` (TYPAGE_KEY: a recipient, age1pq1… or age1…) or `decrypt` (TYPAGE_KEY: an
// identity, AGE-SECRET-KEY-PQ-1… or AGE-SECRET-KEY-1…). stdin and stdout are base64.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const age = await import(pathToFileURL(process.env.TYPAGE_INDEX).href);
const key = process.env.TYPAGE_KEY;
const input = Buffer.from(readFileSync(0, "utf8").trim(), "base64");
let out;
if (process.argv[2] === "encrypt") {
  const e = new age.Encrypter();
  e.addRecipient(key);
  out = await e.encrypt(input);
} else if (process.argv[2] === "decrypt") {
  const d = new age.Decrypter();
  d.addIdentity(key);
  out = await d.decrypt(input);
} else {
  console.error("usage: node typage.mjs encrypt|decrypt");
  process.exit(2);
}
process.stdout.write(Buffer.from(out).toString("base64"));
