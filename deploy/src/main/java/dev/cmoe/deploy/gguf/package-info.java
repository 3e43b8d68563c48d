/** Conversion of our Hugging Face checkpoints to GGUF, so llama.cpp runs the same weights for side-by-side benchmarks. */
package dev.cmoe.deploy.gguf;
