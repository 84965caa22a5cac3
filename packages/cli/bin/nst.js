#!/usr/bin/env node
// Thin launcher: the CLI itself is compiled TypeScript in ../dist.
import '../dist/main.js';
