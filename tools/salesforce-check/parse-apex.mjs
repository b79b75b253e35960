// Parses every Apex file given on the command line with prettier-plugin-apex (the jorje parser,
// Salesforce's own, as a native binary) and names each one that does not parse. Formatting is not
// checked: only whether the file is valid Apex.
import { readFile } from "node:fs/promises";
import * as prettier from "prettier";
import * as apex from "prettier-plugin-apex";

let failed = 0;
for (const file of process.argv.slice(2)) {
  try {
    await prettier.format(await readFile(file, "utf8"), { parser: "apex", plugins: [apex], filepath: file });
  } catch (err) {
    failed++;
    console.error(`${file}: ${String(err.message).split("\n")[0]}`);
  }
}
console.log(`apex parse: ${process.argv.length - 2 - failed} parsed, ${failed} failed`);
process.exit(failed ? 1 : 0);
