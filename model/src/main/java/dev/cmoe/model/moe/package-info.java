/**
 * The carved Mixture-of-Experts FFN: its config block, tensor names, routing decision and the
 * in-process forward that every distributed deployment must reproduce.
 */
package dev.cmoe.model.moe;
