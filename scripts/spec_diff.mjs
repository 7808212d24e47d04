// Prints, as one JSON array on standard output, every change from one bundled OpenAPI document to
// another, classified by api-smart-diff as breaking, non-breaking, deprecated, annotation or
// unclassified. Called by scripts/spec_diff.py (`make spec-diff`), which decides what fails.
//
//   node scripts/spec_diff.mjs BEFORE.json AFTER.json
import { readFileSync } from "node:fs";
import { apiCompare } from "api-smart-diff";

const [beforeFile, afterFile] = process.argv.slice(2);
if (!beforeFile || !afterFile) {
  console.error("usage: node scripts/spec_diff.mjs BEFORE.json AFTER.json");
  process.exit(2);
}
const read = (file) => JSON.parse(readFileSync(file, "utf8"));
const { diffs } = apiCompare(read(beforeFile), read(afterFile));
const changes = diffs.map(({ type, action, path, description }) => ({ type, action, path, description: description ?? "" }));
process.stdout.write(JSON.stringify(changes));
