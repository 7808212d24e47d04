"""Usage analytics (issue 18): per-day request counts and latency histograms added up by every
API process, the day's active users, and the daily rollups a periodic job computes from them."""
