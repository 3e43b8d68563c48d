/** Wire formats of CMoE Server: the gRPC API and the cluster messages (filled by the serving issues). */
package dev.cmoe.proto;
