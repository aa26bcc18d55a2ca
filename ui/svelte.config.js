// Svelte compiler options for vite-plugin-svelte and svelte-check.
/** @type {import("@sveltejs/vite-plugin-svelte").SvelteConfig} */
export default {
  compilerOptions: {
    // Svelte 5 runes everywhere ($state, $props, $derived, $effect).
    runes: true,
  },
};
