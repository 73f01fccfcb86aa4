"""The server's scheduled jobs (alert evaluation, the weekly report, housekeeping), run on
one background thread that the app's lifespan starts and stops."""
