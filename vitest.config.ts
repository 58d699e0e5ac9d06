import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration files each start their own mosquitto + Kafka JVM; on a 2-core machine running
    // them side by side only makes them slow and flaky.
    fileParallelism: false,
    // Child processes (not worker threads), so the harness's process 'exit' hook can kill any
    // broker a crashed test file left behind.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
