/** The model module: checkpoint formats, tokenizer, and the LLaMA-family transformer on DJL NDArrays. */
package dev.cmoe.model;
