"""The worker process: Pykka actors for job dispatch and delivery, brand pollers and the recorder."""
