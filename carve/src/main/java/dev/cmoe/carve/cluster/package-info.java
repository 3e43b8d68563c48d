/**
 * CMoE step 4: neurons as binary ATopK marker columns, their L1 distances to cluster centroids,
 * and the exact balanced assignment of neurons to equal-sized routed experts.
 */
package dev.cmoe.carve.cluster;
