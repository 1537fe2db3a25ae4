"""The orchestration layer: params loading, thin DVC stage entry points, the Prefect flow."""
