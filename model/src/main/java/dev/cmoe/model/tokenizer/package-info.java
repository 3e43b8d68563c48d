/** Byte-level BPE training and the Hugging Face tokenizer facade (via DJL) used for encoding and streaming. */
package dev.cmoe.model.tokenizer;
