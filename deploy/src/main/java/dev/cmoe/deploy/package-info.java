/** The command line, expert placement and the distribution. */
package dev.cmoe.deploy;
