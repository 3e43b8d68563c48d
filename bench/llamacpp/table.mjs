// Prints the run.sh table: per engine and type, median prefill time and decode rate over every
// timed generation of every round, the ratio of ours to llama.cpp's per round (median [min-max]),
// and whether llama.cpp's greedy ids equal ours in every round.
import {readFileSync} from "node:fs";

const [work, model, typesArg, roundsArg, threads] = process.argv.slice(2);
const types = typesArg.split(",");
const rounds = Number(roundsArg);
const read = (f) => JSON.parse(readFileSync(`${work}/${f}`, "utf8"));
const median = (v) => {
    const s = [...v].sort((x, y) => x - y);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ours = [...Array(rounds).keys()].map((r) => read(`ours-${r + 1}.json`));
const prompt = ours[0].prompt_ids.length;
const n = ours[0].greedy_ids.length;
const fmt = (x, d = 1) => x.toFixed(d);

console.log(`model ${model}, ${threads} threads, prompt ${prompt} tokens, ${n} generated, ${rounds} rounds`
    + ` × ${ours[0].prefill_ms.length} timed generations per engine, engines in turn`);
console.log(`| engine | weights | prefill ${prompt} (ms) | prefill tok/s | decode tok/s | ours/llama.cpp decode `
    + `| ours/llama.cpp prefill | greedy ids = ours |`);
console.log("| --- | --- | ---: | ---: | ---: | --- | --- | --- |");
const row = (name, weights, runs, ratioDecode, ratioPrefill, parity) => {
    const pre = median(runs.flatMap((r) => r.prefill_ms));
    const dec = median(runs.flatMap((r) => r.decode_tokens_per_s));
    console.log(`| ${name} | ${weights} | ${fmt(pre)} | ${fmt(prompt / pre * 1000)} | ${fmt(dec)} | ${ratioDecode} `
        + `| ${ratioPrefill} | ${parity} |`);
};
const range = (v) => `${fmt(median(v), 2)}× [${fmt(Math.min(...v), 2)}–${fmt(Math.max(...v), 2)}]`;
row("cmoe", "checkpoint as stored, multiplied in its dtype", ours, "", "", "");
for (const t of types) {
    const runs = [...Array(rounds).keys()].map((r) => read(`llama-${t}-${r + 1}.json`));
    const rd = runs.map((l, r) => median(ours[r].decode_tokens_per_s) / median(l.decode_tokens_per_s));
    const rp = runs.map((l, r) => median(l.prefill_ms) / median(ours[r].prefill_ms));
    const parity = runs.every((l) => l.greedy_parity) ? `yes (${n}/${n})`
        : `no: first differs at ${runs.map((l) => l.first_mismatch).join(", ")}`;
    const tok = runs.every((l) => l.tokenizer_matches) ? "" : " (tokenizer differs)";
    row(runs[0].engine, `GGUF ${t}`, runs, range(rd), range(rp), parity + tok);
}
