#!/usr/bin/env node
// Runs every check and test suite of the project and prints one closing line
// `N passed, N failed, N skipped` (CI reads that line). Each lint/format/type check counts as
// one test; each Rust, jest and pytest test counts as itself. Skipped: jest's skipped tests,
// pytest's, ignored Rust tests, Rust tests that reported themselves skipped and Rust cases
// reported unchecked (`mistralrs-test:` lines, see mistralrs_common::test_support). A missing
// fixture fails its tests unless MISTRALRS_ALLOW_MISSING_FIXTURES=1 (docs/testing.md).
//
//   node scripts/test-all.mjs            everything
//   node scripts/test-all.mjs --only rust|jest|lint|python
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null;
const totals = { passed: 0, failed: 0, skipped: 0 };
const failures = [];

function run(cmd, args, opts = {}) {
  console.log(`\n$ ${cmd} ${args.join(' ')}`);
  const result = spawnSync(cmd, args, {
    cwd: root,
    encoding: 'utf8',
    stdio: opts.capture ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    env: { ...process.env, ...opts.env },
    maxBuffer: 256 * 1024 * 1024,
  });
  if (opts.capture) {
    process.stdout.write(result.stdout ?? '');
    process.stderr.write(result.stderr ?? '');
  }
  return result;
}

function check(name, cmd, args) {
  const ok = run(cmd, args).status === 0;
  if (ok) totals.passed++;
  else {
    totals.failed++;
    failures.push(name);
  }
}

function rustTests() {
  // One release profile for tests and addons (see Cargo.toml); both ISA tiers: the detected
  // one, and the scalar reference forced through MISTRALRS_ISA.
  for (const isa of ['', 'scalar']) {
    const env = isa ? { MISTRALRS_ISA: isa } : {};
    const result = run('cargo', ['test', '--release', '--workspace'], { capture: true, env });
    const text = `${result.stdout}\n${result.stderr}`;
    let passed = 0;
    let failed = 0;
    let ignored = 0;
    for (const m of text.matchAll(/test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored/g)) {
      passed += Number(m[1]);
      failed += Number(m[2]);
      ignored += Number(m[3]);
    }
    // Tests that reported themselves skipped passed for libtest: count them as skipped. Each
    // unchecked case of a test that ran counts as one skipped check.
    const skippedTests = new Set();
    let unchecked = 0;
    for (const m of text.matchAll(/mistralrs-test: (SKIPPED|UNCHECKED) (\S+): /g)) {
      if (m[1] === 'SKIPPED') skippedTests.add(m[2]);
      else unchecked++;
    }
    passed -= skippedTests.size;
    ignored += skippedTests.size + unchecked;
    if (result.status !== 0 && failed === 0) {
      failed = 1; // a build failure or a crashed test binary
      failures.push(`cargo test${isa ? ` (MISTRALRS_ISA=${isa})` : ''}: exited ${result.status}`);
    } else if (failed > 0) {
      failures.push(`cargo test${isa ? ` (MISTRALRS_ISA=${isa})` : ''}: ${failed} failed`);
    }
    totals.passed += passed;
    totals.failed += failed;
    totals.skipped += ignored;
  }
}

function jestTests() {
  const out = join(mkdtempSync(join(tmpdir(), 'jest-')), 'results.json');
  const result = run('node', ['--experimental-vm-modules', 'node_modules/jest/bin/jest.js', '--json', `--outputFile=${out}`], {
    env: { NODE_NO_WARNINGS: '1' },
  });
  if (!existsSync(out)) {
    totals.failed++;
    failures.push(`jest: exited ${result.status} without results`);
    return;
  }
  const report = JSON.parse(readFileSync(out, 'utf8'));
  totals.passed += report.numPassedTests;
  totals.failed += report.numFailedTests;
  totals.skipped += report.numPendingTests + report.numTodoTests;
  // A suite that fails to load counts no tests but must not pass silently.
  const broken = report.testResults.filter((s) => s.status === 'failed' && s.assertionResults.length === 0);
  totals.failed += broken.length;
  for (const s of broken) failures.push(`jest suite failed to run: ${s.name}`);
  if (report.numFailedTests > 0) failures.push(`jest: ${report.numFailedTests} failed`);
}

function lint() {
  check('cargo fmt --check', 'cargo', ['fmt', '--all', '--check']);
  // Binding crates are cdylibs without tests: their #[napi] exports look unused to a test build.
  const bindings = ['mistralrs-quant-node', 'mistralrs-core-node', 'mistralrs-paged-attn-node'];
  const exclude = bindings.flatMap((b) => ['--exclude', b]);
  check('cargo clippy', 'cargo', ['clippy', '--release', '--workspace', ...exclude, '--all-targets', '--', '-D', 'warnings']);
  check('cargo clippy (bindings)', 'cargo', ['clippy', '--release', ...bindings.flatMap((b) => ['-p', b]), '--', '-D', 'warnings']);
  check('tsc (typecheck)', 'pnpm', ['typecheck']);
  // Formatting and lint of the TypeScript and the scripts (biome.json), as one check.
  check('biome ci (format and lint)', join(root, 'node_modules', '.bin', 'biome'), ['ci', '--colors=off', '.']);
}

function pythonTests() {
  // The Python bridge's tests, in the venv scripts/setup.sh makes; they start the real server.
  const python = join(root, '.venv', 'bin', 'python');
  if (!existsSync(python)) {
    totals.failed++;
    failures.push('pytest: no .venv/bin/python (run ./scripts/setup.sh)');
    return;
  }
  // Lint, format and strict types (one test each), with the bridge's pyproject.toml settings.
  const config = 'packages/python-bridge/pyproject.toml';
  const pyPaths = ['packages/python-bridge', 'examples/python'];
  check('ruff check (python)', python, ['-m', 'ruff', 'check', '--config', config, ...pyPaths]);
  check('ruff format --check (python)', python, ['-m', 'ruff', 'format', '--check', '--config', config, ...pyPaths]);
  check('mypy --strict (python-bridge)', python, ['-m', 'mypy', '--config-file', config, 'packages/python-bridge/src/mistralrs']);
  const out = join(mkdtempSync(join(tmpdir(), 'pytest-')), 'junit.xml');
  const result = run(python, ['-m', 'pytest', 'packages/python-bridge/tests', '-q', `--junitxml=${out}`]);
  const suite = existsSync(out) ? /<testsuite\b[^>]*>/.exec(readFileSync(out, 'utf8'))?.[0] : undefined;
  if (!suite) {
    totals.failed++;
    failures.push(`pytest: exited ${result.status} without results`);
    return;
  }
  const count = (name) => Number(new RegExp(`\\b${name}="(\\d+)"`).exec(suite)?.[1] ?? 0);
  const [tests, failed, errors, skipped] = ['tests', 'failures', 'errors', 'skipped'].map(count);
  totals.passed += tests - failed - errors - skipped;
  totals.failed += failed + errors;
  totals.skipped += skipped;
  if (failed + errors > 0) failures.push(`pytest: ${failed} failed, ${errors} errors`);
  else if (result.status !== 0) {
    // No test failed, yet pytest did not succeed: no tests collected (5), an internal error, ...
    totals.failed++;
    failures.push(`pytest: exited ${result.status}`);
  }
}

if (!only || only === 'lint') lint();
if (!only || only === 'rust') rustTests();
if (!only || only === 'jest') jestTests();
if (!only || only === 'python') pythonTests();

console.log('');
if (failures.length) console.log(`Failures:\n  ${failures.join('\n  ')}`);
console.log(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(totals.failed === 0 ? 0 : 1);
