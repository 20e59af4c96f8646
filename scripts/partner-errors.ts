// Writes docs/partner-errors.md from the error registry (src/partner-errors.ts).
import { writeFileSync } from 'node:fs';
import { partnerErrorsPage } from '../src/partner-errors.js';

writeFileSync(new URL('../docs/partner-errors.md', import.meta.url), partnerErrorsPage());
