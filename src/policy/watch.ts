// Watches the catalog file for changes and calls back with each new content. It watches the
// DIRECTORY, not the file: a mounted Kubernetes ConfigMap is updated by swapping a `..data`
// symlink, which a watch on the old file would never see. Bursts of events are debounced, and a
// change is reported only when the bytes actually changed.
import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';

export interface CatalogWatcher {
  close(): void;
}

export function watchCatalog(
  file: string,
  onChange: (text: string) => void,
  options: { debounceMs?: number; onError?: (err: unknown) => void } = {},
): CatalogWatcher {
  const debounceMs = options.debounceMs ?? 200;
  let lastHash = '';
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const check = async () => {
    try {
      const text = await readFile(file, 'utf8');
      const hash = createHash('sha256').update(text).digest('hex');
      if (hash !== lastHash && !closed) {
        const first = lastHash === '';
        lastHash = hash;
        if (!first) onChange(text);
      }
    } catch (err: unknown) {
      // Mid-swap the file may be briefly absent: the next event (or the retry) settles it.
      options.onError?.(err);
    }
  };
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(check, debounceMs);
  };
  void check(); // remember the bytes being served now
  const name = basename(file);
  const watcher: FSWatcher = watch(dirname(file), (_event, changed) => {
    // ConfigMaps change `..data` and `..<timestamp>`, never the file name itself.
    if (!changed || changed === name || changed.startsWith('..')) schedule();
  });
  watcher.on('error', (err) => options.onError?.(err));
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      watcher.close();
    },
  };
}
