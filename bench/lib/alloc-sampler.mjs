/**
 * Preloaded into a bridge by `MEM_ALLOC=1 npx tsx bench/memory.ts` (`--import`): V8's sampling heap
 * profiler, keeping the samples of objects that the garbage collector has already freed, so the
 * profile is of everything allocated (what drives scavenges and promotion), not only of what is
 * still live. The first SIGUSR2 starts sampling; the second writes the profile to
 * $ALLOC_PROFILE_PATH (Chrome DevTools' .heapprofile format). A bench tool only: the image
 * never loads it.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

const session = new Session();
session.connect();
const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, r) => (err ? reject(err) : resolve(r))));
let sampling = false;
process.on('SIGUSR2', () => {
  const next = sampling
    ? post('HeapProfiler.stopSampling').then(({ profile }) => writeFileSync(process.env.ALLOC_PROFILE_PATH ?? `alloc-${process.pid}.heapprofile`, JSON.stringify(profile)))
    : post('HeapProfiler.enable').then(() =>
        post('HeapProfiler.startSampling', { samplingInterval: 8192, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true }),
      );
  sampling = !sampling;
  next.catch((err) => process.stderr.write(`alloc-sampler: ${err}\n`));
});
