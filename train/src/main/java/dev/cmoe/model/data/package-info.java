/** Training corpora: download, verification, tagged-to-plain conversion and deterministic splits. */
package dev.cmoe.model.data;
