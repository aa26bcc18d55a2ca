import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defineConfig } from "vitest/config";

// Loaded by Tauri v2: `devUrl` http://localhost:1420 in development, `frontendDist`
// ../ui/dist (relative to src-tauri/) in release builds.
export default defineConfig({
  plugins: [svelte()],
  // Relative asset URLs so dist/ works from Tauri's custom protocol and from any folder.
  base: "./",
  clearScreen: false,
  server: {
    port: 1420,
    strictPort: true,
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // WebKitGTK 2.4x (Linux), WKWebView (macOS 12+) and WebView2 all handle Safari 15 output.
    target: "safari15",
    sourcemap: false,
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
