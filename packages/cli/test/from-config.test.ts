/**
 * `mistralrs-server from-config -f FILE` and `toml -f FILE` with `[[models]]`: the real
 * command, spawned, serving two tiny models (random-weight Llama and Qwen 2 GGUFs) and
 * listing a third it loads only on request; a bad config or a memory limit too small for the
 * models stops it before it listens, with one line naming the file and the reason.
 */
import { afterAll, beforeAll, expect } from '@jest/globals';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { needsFixtures } from '../../../test-support/fixtures.js';
import { vocabPath, writeTinyGguf } from '../../core/test/fixtures/tiny-model.js';

const bin = new URL('../bin/mistralrs-server.js', import.meta.url).pathname;
const tiny = needsFixtures('the Llama vocabulary (tiny models)', [vocabPath]);

let dir: string;
let llama: string;
let qwen: string;

beforeAll(async () => {
  if (!tiny.present) return;
  dir = mkdtempSync(join(tmpdir(), 'cli-from-config-'));
  llama = join(dir, 'tiny-llama.gguf');
  qwen = join(dir, 'tiny-qwen2.gguf');
  await writeTinyGguf(llama, { arch: 'llama' }, 'Q8_0');
  await writeTinyGguf(qwen, { arch: 'qwen2' }, 'Q8_0');
}, 120_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Two tiny models loaded at the start, the llama again (as `spare`) listed unloaded. */
const twoModels = () => `
command = "serve"

[server]
port = 0
max_running = 4

[[models]]
model = "${llama}"
pa_ctxt_len = 256

[[models]]
id = "qwen"
model = "${qwen}"
pa_ctxt_len = 256

[[models]]
id = "spare"
model = "${llama}"
pa_ctxt_len = 128
load = false
`;

interface Running {
  child: ChildProcess;
  url: string;
  label: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Spawns the command and waits for its `listening on URL (IDS)` line. */
function start(args: string[]): Promise<Running> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  return new Promise((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
      const match = /listening on (http:\/\/\S+) \((.+)\)\n/.exec(stderr);
      if (match) resolve({ child, url: match[1]!, label: match[2]!, stderr: () => stderr, exited });
    });
    void exited.then((code) => reject(new Error(`exited ${code} before listening: ${stderr}`)));
  });
}

function run(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stderr: r.stderr };
}

async function completion(url: string, model: string) {
  const response = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt: 'Once upon a time', max_tokens: 4, temperature: 0 }),
  });
  return {
    status: response.status,
    body: (await response.json()) as { model?: string; choices?: Array<{ text: string }>; error?: { code: string } },
  };
}

tiny.describe('from-config', () => {
  tiny.it(
    'serves two models from a TOML file, answers each by name, lists a third unloaded and loads it on request',
    async () => {
      const server = await start(['from-config', '-f', writeConfig('two.toml', twoModels())]);
      try {
        expect(server.label).toBe('tiny-llama, qwen, spare');
        expect(server.stderr()).toMatch(
          /models: tiny-llama \(loaded, [\d.]+ MiB\), qwen \(loaded, [\d.]+ MiB\), spare \(unloaded\); memory limit /,
        );
        const list = (await (await fetch(`${server.url}/v1/models`)).json()) as { data: Array<{ id: string; status: string }> };
        expect(list.data.map((m) => [m.id, m.status])).toEqual([
          ['tiny-llama', 'loaded'],
          ['qwen', 'loaded'],
          ['spare', 'unloaded'],
        ]);
        const fromLlama = await completion(server.url, 'tiny-llama');
        const fromQwen = await completion(server.url, 'qwen');
        expect([fromLlama.status, fromLlama.body.model]).toEqual([200, 'tiny-llama']);
        expect([fromQwen.status, fromQwen.body.model]).toEqual([200, 'qwen']);
        expect(fromLlama.body.choices![0]!.text).not.toBe(fromQwen.body.choices![0]!.text);
        expect((await completion(server.url, 'default')).body.model).toBe('tiny-llama');

        expect((await completion(server.url, 'spare')).body.error!.code).toBe('model_not_loaded');
        // On 127.0.0.1 without an API key, this machine's users may load models.
        const load = await fetch(`${server.url}/v1/models/load`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'spare' }),
        });
        expect([load.status, ((await load.json()) as { status: string }).status]).toEqual([200, 'loaded']);
        // The same weights as tiny-llama, so the same greedy answer.
        expect((await completion(server.url, 'spare')).body.choices![0]!.text).toBe(fromLlama.body.choices![0]!.text);
      } finally {
        server.child.kill('SIGINT');
        expect(await server.exited).toBe(0);
      }
    },
    120_000,
  );

  tiny.it(
    'toml -f takes the same file; --port and --api-key override [server]',
    async () => {
      const server = await start(['toml', '-f', writeConfig('two-again.toml', twoModels()), '--port', '0', '--api-key', 'sk-cli']);
      try {
        const noKey = await fetch(`${server.url}/v1/models`);
        expect(noKey.status).toBe(401);
        const withKey = await fetch(`${server.url}/v1/models`, { headers: { authorization: 'Bearer sk-cli' } });
        expect(((await withKey.json()) as { data: unknown[] }).data).toHaveLength(3);
      } finally {
        server.child.kill('SIGTERM');
        expect(await server.exited).toBe(0);
      }
    },
    120_000,
  );

  tiny.it(
    'a JSON config with the same keys',
    async () => {
      const config = { server: { port: 0 }, models: [{ id: 'only', model: qwen, pa_ctxt_len: 128 }] };
      const server = await start(['from-config', '-f', writeConfig('one.json', JSON.stringify(config))]);
      try {
        expect((await completion(server.url, 'only')).status).toBe(200);
      } finally {
        server.child.kill('SIGINT');
        expect(await server.exited).toBe(0);
      }
    },
    120_000,
  );

  tiny.it(
    'stops before listening when the models do not fit the memory limit, naming the limit, the size and what is loaded',
    () => {
      const path = writeConfig('too-big.toml', twoModels());
      const result = run(['from-config', '-f', path, '--max-memory', '3mb']);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        new RegExp(
          `^mistralrs-server: ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot load the model "(tiny-llama|qwen)": it takes [\\d.]+ MiB \\(\\w+: weights and KV cache\\), and the server's memory limit is 3.0 MiB`,
        ),
      );
    },
    60_000,
  );

  tiny.it(
    'a bad config is one line naming the file and the key; flags a config sets per model are refused',
    () => {
      const bad = writeConfig('bad.toml', `[[models]]\nmodel = "${llama}"\npa_ctxt_len = "lots"\n`);
      const result = run(['from-config', '-f', bad]);
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(`mistralrs-server: ${bad}: models[0].pa_ctxt_len must be a positive integer, got "lots"\n`);

      const missing = run(['from-config', '-f', join(dir, 'nope.toml')]);
      expect([missing.code, missing.stderr]).toEqual([1, `mistralrs-server: ${join(dir, 'nope.toml')}: no such file\n`]);

      const flags = run(['from-config', '-f', bad, '--pa-ctxt-len', '64']);
      expect(flags.code).toBe(1);
      expect(flags.stderr).toContain('--pa-ctxt-len do not apply to from-config (set them per model in the file)');

      const memoryFlag = run(['from-config', '-f', bad, '--max-memory', 'much']);
      expect(memoryFlag.stderr).toContain('models[0].pa_ctxt_len');
    },
    60_000,
  );
});
