-- wrk script: every request is the method and JSON body given in BODY / METHOD.
wrk.method = os.getenv("METHOD") or "POST"
wrk.body = os.getenv("BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"
