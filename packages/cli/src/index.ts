export { parseConfig } from './commands/render.js';
