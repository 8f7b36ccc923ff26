"""Checks of the Helm chart charts/backtest-kit-operator (rendered offline through Helm's Go library)."""
