/** CMoE experts module; see its README.md for what it is for. */
package dev.cmoe.experts;
