// llama.cpp's side of the cmoe comparison: loads a GGUF with node-llama-cpp's prebuilt CPU
// binary (never downloads or builds), feeds the prompt ids `cmoe bench-decode` wrote, and times
// greedy generation the same way: prefill = time to the first token, decode = tokens/s after it.
// Writes a JSON record like ours. Usage:
//   node llamacpp-decode.mjs --gguf FILE --ours OURS.json --threads 2 --repeats 3 --out FILE.json
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import {readFileSync, writeFileSync, renameSync} from "node:fs";
import {loadavg} from "node:os";

function args(argv) {
    const a = {threads: 2, repeats: 3};
    for (let i = 0; i < argv.length; i += 2) {
        const key = argv[i].replace(/^--/, "");
        if (argv[i + 1] === undefined) throw new Error(`missing value for ${argv[i]}`);
        a[key] = argv[i + 1];
    }
    for (const k of ["gguf", "ours", "out"]) if (!a[k]) throw new Error(`--${k} is required`);
    return a;
}

const median = (v) => {
    const s = [...v].sort((x, y) => x - y);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const opt = args(process.argv.slice(2));
const ours = JSON.parse(readFileSync(opt.ours, "utf8"));
const prompt = ours.prompt_ids;
const n = ours.greedy_ids.length;
const threads = Number(opt.threads);
const repeats = Number(opt.repeats);

// build "never" + skipDownload: use the prebuilt binary in node_modules or fail, never fetch.
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
    progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: threads});
const model = await llama.loadModel({modelPath: opt.gguf, gpuLayers: 0, useMmap: true});
const context = await model.createContext({contextSize: prompt.length + n + 64, batchSize: prompt.length,
    sequences: 1, threads: {ideal: threads, min: threads}, flashAttention: false});
const seq = context.getSequence();

async function generate() {
    await seq.clearHistory();
    const at = [];
    const ids = [];
    const start = process.hrtime.bigint();
    for await (const token of seq.evaluate(prompt, {temperature: 0})) {
        at.push(process.hrtime.bigint());
        ids.push(token);
        if (ids.length === n) break;
    }
    const prefillMs = Number(at[0] - start) / 1e6;
    const decodeTps = (n - 1) / (Number(at[n - 1] - at[0]) / 1e9);
    return {ids, prefillMs, decodeTps};
}

const first = await generate(); // untimed, as on our side
const prefill = [], decode = [];
for (let r = 0; r < repeats; r++) {
    const run = await generate();
    if (run.ids.join() !== first.ids.join()) throw new Error("llama.cpp greedy ids differ between repeats");
    prefill.push(run.prefillMs);
    decode.push(run.decodeTps);
}
// tokenizer parity: llama.cpp's own tokenization of the prompt text, when the driver passes it
let tokenizerMatches = null;
if (opt.text !== undefined) {
    const want = ours.text_ids;
    const got = model.tokenize(opt.text, false);
    tokenizerMatches = want !== undefined && got.join() === want.join();
}
let firstMismatch = -1;
for (let i = 0; i < n; i++) {
    if (first.ids[i] !== ours.greedy_ids[i]) { firstMismatch = i; break; }
}
const record = {
    engine: "llama.cpp (node-llama-cpp " + JSON.parse(readFileSync(new URL("./node_modules/node-llama-cpp/package.json",
        import.meta.url), "utf8")).version + ", " + llama.buildType + " binary, ggml " + llama.llamaCppRelease.release + ")",
    gguf: opt.gguf,
    threads,
    load_average: loadavg()[0],
    greedy_ids: first.ids,
    greedy_parity: firstMismatch < 0,
    first_mismatch: firstMismatch,
    tokenizer_matches: tokenizerMatches,
    prefill_ms: prefill,
    decode_tokens_per_s: decode,
};
writeFileSync(opt.out + ".tmp", JSON.stringify(record, null, 2));
renameSync(opt.out + ".tmp", opt.out);
console.error(`llama.cpp: prefill ${prompt.length} tokens ${median(prefill).toFixed(1)} ms, decode `
    + `${median(decode).toFixed(1)} tokens/s (medians of ${repeats}); greedy parity ${firstMismatch < 0 ? "yes"
        : "no, first differs at " + firstMismatch}`);
await context.dispose();
await model.dispose();
await llama.dispose();
