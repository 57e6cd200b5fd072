"""Integrations with other libraries; each is imported on its own, so `import llmkernels` imports none of them."""
