/**
 * Our own reader and writer for the Hugging Face safetensors format, so checkpoints are validated
 * byte by byte before anything trusts them and are mapped one tensor at a time instead of whole.
 */
package dev.cmoe.model.safetensors;
