# report.awk — the table of a bench results file (format: README.md here).
#   awk -f tests/bench/report.awk build/bench/results.txt
# Rows: workload × metric; columns: the backend alone, each front-end, then
# popsd/stunnel and popsd/nginx, and issue 14's targets with the ratio and
# ok/MISS. "floor:" rows (tests/bench/floor.c, when the file has them) hold
# their value in the first column; the CPU targets are ratios to them.

function val(wl, cert, fe, key,   k) {
	k = wl SUBSEP cert SUBSEP fe SUBSEP key
	return (k in V) ? V[k] : ""
}

function failed(wl, cert, fe) {
	return val(wl, cert, fe, "failed") + 0
}

function cell(wl, cert, fe, key, fmt,   v) {
	v = val(wl, cert, fe, key)
	if (v == "")
		return "-"
	v = sprintf(fmt, v)
	if (failed(wl, cert, fe) > 0) {
		v = v "*"
		footnote = 1
	}
	return v
}

function ratio(a, b) {
	if (a == "" || b == "" || b + 0 == 0)
		return ""
	return a / b
}

# ok C: "ok" or "MISS"
function ok(c) {
	return c ? "ok" : "MISS"
}

# verdict: the issue-14 target check for one row, or "". TARG is a
# comma-separated list of checks on popsd's value P:
#   fl<=X   P <= X times the floor FL (the ratio P/FL printed)
#   st<=X   P <= X times stunnel's (ratio RS)
#   ng>=X   P >= X times nginx's (ratio RN)
#   <=X     P <= X, P as printed (FMT)
#   tcp     no check: P / the loopback TCP handshake floor (global fl_tcp)
function verdict(targ, p, rs, rn, fl, fmt,   out, a, n, i, t, x, r) {
	if (targ == "" || p == "")
		return ""
	n = split(targ, a, ",")
	out = ""
	for (i = 1; i <= n; i++) {
		t = a[i]
		x = t
		sub(/^[a-z]*[<>]=/, "", x)
		r = ""
		if (t ~ /^fl<=/ && fl != "" && fl + 0 > 0)
			r = sprintf("<=%sx floor %.3f: %.2fx %s", x, fl, p / fl,
			    ok(p / fl <= x + 0))
		else if (t ~ /^st<=/ && rs != "")
			r = sprintf("<=%sx st: %.2fx %s", x, rs, ok(rs + 0 <= x + 0))
		else if (t ~ /^ng>=/ && rn != "")
			r = sprintf(">=%sx ng: %.2fx %s", x, rn, ok(rn + 0 >= x + 0))
		else if (t == "tcp" && fl_tcp != "" && fl_tcp + 0 > 0)
			r = sprintf("TCP floor %.3f: %.2fx", fl_tcp, p / fl_tcp)
		else if (t ~ /^<=/)
			r = sprintf("<=%s: %s", x, ok(sprintf(fmt, p) + 0 <= x + 0))
		if (r != "")
			out = out (out == "" ? "" : "; ") r
	}
	return out
}

# row LABEL WL CERT KEY FMT [TARGETS [FLOOR]]: TARGETS as verdict() reads them
function row(label, wl, cert, key, fmt, targ, fl,   i, fe, line, p, s, n, rs, rn, vd) {
	p = val(wl, cert, "popsd", key)
	s = val(wl, cert, "stunnel", key)
	n = val(wl, cert, "nginx", key)
	if (p == "" && s == "" && n == "" && val(wl, cert, "backend", key) == "")
		return
	line = sprintf("%-34s", label)
	for (i = 1; i <= nfe; i++) {
		fe = FE[i]
		line = line sprintf(" %9s", cell(wl, cert, fe, key, fmt))
	}
	rs = ratio(p, s)
	rn = ratio(p, n)
	line = line sprintf(" %7s %7s", rs == "" ? "-" : sprintf("%.2f", rs),
	    rn == "" ? "-" : sprintf("%.2f", rn))
	vd = verdict(targ, p, rs, rn, fl, fmt)
	print line "  " vd
}

# floor_row LABEL WHAT NOTE: a floor.c limit beside the measured rows, its
# value in the first column; nothing if the results file has no such line.
function floor_row(label, what, note,   i, line) {
	if (L[what] == "")
		return
	line = sprintf("%-34s", label)
	for (i = 1; i <= nfe; i++)
		line = line sprintf(" %9s", i == 1 ? sprintf("%.3f", L[what]) : "-")
	print line sprintf(" %7s %7s  %s", "-", "-", note)
}

# lim WHAT: a limit with 3 decimals, or "-"
function lim(what) {
	return L[what] == "" ? "-" : sprintf("%.3f", L[what])
}

# floor_header: the floor.c line under the openssl speed one, if any
function floor_header(   ci, c, out) {
	if (L["floor-relay-aes-256-gcm-16k"] == "" && L["floor-relay-none-16k"] == "" &&
	    L["floor-hs-rsa-t2"] == "" && L["floor-hs-ec-t2"] == "")
		return
	printf "floor (floor.c, same run, best of its runs): relay ms/MiB kernel only %s, " \
	    "+AES-256-GCM %s, 64 KiB I/O %s\n", lim("floor-relay-none-16k"),
	    lim("floor-relay-aes-256-gcm-16k"), lim("floor-relay-aes-256-gcm-64k")
	out = ""
	for (ci = 1; ci <= 2; ci++) {
		c = ci == 1 ? "rsa" : "ec"
		if (L["floor-hs-" c "-t2"] == "" && L["floor-hs-" c "-resume"] == "")
			continue
		out = out sprintf("%s%s %s / %s / %s", out == "" ? "" : "; ",
		    c == "rsa" ? "RSA-2048" : "ECDSA P-256", lim("floor-hs-" c "-t2"),
		    lim("floor-hs-" c "-t1"), lim("floor-hs-" c "-t0"))
		if (L["floor-hs-" c "-resume"] != "")
			out = out sprintf(", resumed %s (%.0f%%)", lim("floor-hs-" c "-resume"),
			    LF["floor-hs-" c "-resume", "resumed_pct"])
		if (L["floor-hs-" c "-t2-tcp"] != "")
			out = out sprintf(", 2 tickets over loopback TCP %s", lim("floor-hs-" c "-t2-tcp"))
	}
	if (out != "")
		printf "  OpenSSL server handshake ms, 2 / 1 / 0 tickets, no I/O: %s\n", out
}

function section(title) {
	print ""
	print title
}

BEGIN { nfe = 0 }

/^#/ || NF == 0 { next }

{
	delete F
	for (i = 1; i <= NF; i++) {
		eq = index($i, "=")
		if (eq > 0)
			F[substr($i, 1, eq - 1)] = substr($i, eq + 1)
	}
	wl = F["wl"]
	if (wl == "machine") {
		for (k in F)
			M[k] = F[k]
		next
	}
	if (wl == "limit") {
		w = F["what"]
		v = F["ms_per_op"] != "" ? F["ms_per_op"] : \
		    F["ms_per_mib"] != "" ? F["ms_per_mib"] : F["server_ms_per_hs"]
		# A limit measured again later in the run (floor.c, at the
		# start and at the end): the lowest is the floor.
		if (L[w] != "" && v + 0 >= L[w] + 0)
			next
		L[w] = v
		LO[w] = F["ops"] != "" ? F["ops"] : F["kbps"]
		for (k in F)
			LF[w, k] = F[k]
		next
	}
	if (wl == "end") {
		total = F["secs_total"]
		next
	}
	cert = F["cert"]
	fe = F["fe"]
	if (!(fe in seen_fe)) {
		seen_fe[fe] = 1
	}
	if (cert != "-" && !(cert in seen_cert)) {
		seen_cert[cert] = 1
		certs[++ncert] = cert
	}
	for (k in F)
		V[wl, cert, fe, k] = F[k]
	# resumed share of the sessions
	if (F["ok"] + 0 > 0 && F["resumed"] != "")
		V[wl, cert, fe, "resumed_pct"] = 100 * F["resumed"] / F["ok"]
	if (F["fe_rss_kib"] != "")
		V[wl, cert, fe, "fe_rss_mib"] = F["fe_rss_kib"] / 1024
}

END {
	split("backend popsd stunnel nginx popsd+fix", order, " ")
	for (i = 1; i <= 5; i++)
		if (order[i] in seen_fe)
			FE[++nfe] = order[i]
	printf "popsd benchmark  %s  %s x %s, %s MiB, Linux %s\n", M["date"],
	    M["cpus"], M["model"], M["mem_mib"], M["kernel"]
	printf "OpenSSL %s, stunnel %s, nginx %s, Dovecot %s, popsd %s; " \
	    "load average before %s\n", M["openssl"], M["stunnel"], M["nginx"],
	    M["dovecot"], M["popsd"], M["load_before"]
	printf "runs: %s s per sessions run, %s concurrent, bulk %s x %s MiB, " \
	    "idle %s, latency %s sequential%s\n", M["secs"], M["conc"],
	    M["bulk_clients"], M["msg_mib"], M["idle_n"], M["lat_n"],
	    total != "" ? sprintf("; whole run %s s", total) : ""
	printf "limits, one core (openssl speed): AES-256-GCM %.3f ms/MiB, " \
	    "RSA-2048 sign %.3f ms, ECDSA P-256 sign %.3f ms / verify %.3f ms, " \
	    "X25519 %.3f ms\n", L["aes-256-gcm-16k"], L["rsa2048-sign"],
	    L["ecdsap256-sign"], L["ecdsap256-verify"], L["x25519"]
	# The kernel's share (a relay without AEAD) plus the AEAD alone
	# (openssl speed): each measured where it is cheapest.
	if (L["floor-relay-none-16k"] != "" && L["aes-256-gcm-16k"] != "")
		L["floor-sum-16k"] = L["floor-relay-none-16k"] + L["aes-256-gcm-16k"]
	floor_header()
	# Issue 14's bulk floor: relay + AES at popsd's buffer size (64 KiB).
	fl_bulk = L["floor-relay-aes-256-gcm-64k"]

	hdr = sprintf("%-34s", "workload / metric")
	for (i = 1; i <= nfe; i++)
		hdr = hdr sprintf(" %9s", FE[i])
	hdr = hdr sprintf(" %7s %7s  %s", "p/st", "p/ng", "target (issue 14)")
	print ""
	print hdr

	c1 = certs[1]
	section("bulk: " M["bulk_clients"] " clients, each RETR of " M["msg_mib"] " MiB x " \
	    M["bulk_retrs"] ", pop3s (" c1 ")")
	row("  via Dovecot: MiB/s", "bulk", c1, "mibps", "%.0f")
	row("  via Dovecot: front-end ms/MiB", "bulk", c1, "fe_ms_per_mib", "%.3f", "fl<=1.1,st<=0.7", fl_bulk)
	row("  via Dovecot: Dovecot ms/MiB", "bulk", c1, "be_ms_per_mib", "%.3f")
	row("  via Dovecot: loadgen ms/MiB", "bulk", c1, "lg_ms_per_mib", "%.3f")
	row("  via Dovecot: loadgen busy, cores", "bulk", c1, "lg_util", "%.2f")
	row("  minimal backend: MiB/s", "bulk-mini", c1, "mibps", "%.0f")
	row("  minimal backend: fe ms/MiB", "bulk-mini", c1, "fe_ms_per_mib", "%.3f", "fl<=1.1,st<=0.7", fl_bulk)
	floor_row("  floor: relay, kernel only ms/MiB", "floor-relay-none-16k",
	    "floor.c: read 16 KiB, write it, no TLS")
	floor_row("  floor: relay+AES-256-GCM ms/MiB", "floor-relay-aes-256-gcm-16k",
	    "the same, each 16 KiB sealed as a record")
	floor_row("  floor: relay+AES, 64K I/O ms/MiB", "floor-relay-aes-256-gcm-64k",
	    "the same, 64 KiB reads, 16 KiB records, one write")
	floor_row("  floor: kernel + AES alone ms/MiB", "floor-sum-16k",
	    "relay kernel only + openssl speed AES-256-GCM")
	row("  minimal backend: loadgen ms/MiB", "bulk-mini", c1, "lg_ms_per_mib", "%.3f")
	row("  minimal backend: front-end busy", "bulk-mini", c1, "fe_util", "%.2f")
	row("  minimal backend: loadgen busy", "bulk-mini", c1, "lg_util", "%.2f")
	# the backend alone
	row("  plaintext baseline MiB/s", "bulk", "-", "mibps", "%.0f")
	row("  plaintext baseline (minimal) MiB/s", "bulk-mini", "-", "mibps", "%.0f")

	for (ci = 1; ci <= ncert; ci++) {
		c = certs[ci]
		ct = c == "rsa" ? "RSA-2048" : "ECDSA P-256"
		# Issue 14's: OpenSSL's server handshake, no I/O, 2 tickets
		# as popsd sends; beside it, the same over loopback TCP.
		fl_hs = L["floor-hs-" c "-t2"]
		fl_tcp = L["floor-hs-" c "-t2-tcp"]
		section("sessions: " M["conc"] " concurrent, full handshake + USER/PASS/STAT/QUIT (" ct ")")
		row("  pop3s sessions/s", "sess-pop3s", c, "rate", "%.0f", "ng>=1.2")
		row("  pop3s p50 ms", "sess-pop3s", c, "p50_ms", "%.1f")
		row("  pop3s p99 ms", "sess-pop3s", c, "p99_ms", "%.1f")
		row("  pop3s front-end ms/session", "sess-pop3s", c, "fe_cpu_per_op_ms", "%.3f",
		    "fl<=1.25,tcp", fl_hs)
		floor_row("  floor: OpenSSL handshake ms", "floor-hs-" c "-t2",
		    "floor.c: server side, no I/O, 2 tickets (default, as popsd)")
		floor_row("  floor: the same, loopback TCP ms", "floor-hs-" c "-t2-tcp",
		    "floor.c -l: accept, handshake, close_notify, close; kernel included")
		floor_row("  floor: the same, 1 ticket ms", "floor-hs-" c "-t1",
		    "floor.c: one ticket fewer")
		row("  pop3s Dovecot ms/session", "sess-pop3s", c, "be_cpu_per_op_ms", "%.3f")
		row("  pop3s loadgen ms/session", "sess-pop3s", c, "lg_cpu_per_op_ms", "%.3f")
		row("  pop3s front-end busy, cores", "sess-pop3s", c, "fe_util", "%.2f")
		row("  pop3s loadgen busy, cores", "sess-pop3s", c, "lg_util", "%.2f")
		row("  STLS sessions/s", "sess-stls", c, "rate", "%.0f", "ng>=1.2")
		row("  STLS p50 ms", "sess-stls", c, "p50_ms", "%.1f")
		row("  STLS p99 ms", "sess-stls", c, "p99_ms", "%.1f")
		row("  STLS front-end ms/session", "sess-stls", c, "fe_cpu_per_op_ms", "%.3f",
		    "fl<=1.25,tcp", fl_hs)
		row("  minimal backend: sessions/s", "sess-mini", c, "rate", "%.0f", "ng>=1.2")
		row("  minimal backend: fe ms/session", "sess-mini", c, "fe_cpu_per_op_ms", "%.3f",
		    "fl<=1.25,tcp", fl_hs)
		row("  minimal backend: loadgen ms/sess", "sess-mini", c, "lg_cpu_per_op_ms", "%.3f")
		row("  minimal backend: front-end busy", "sess-mini", c, "fe_util", "%.2f")
		row("  minimal backend: loadgen busy", "sess-mini", c, "lg_util", "%.2f")
		section("resumption: the same, each client resuming its last session (" ct ")")
		row("  pop3s sessions/s", "resume-pop3s", c, "rate", "%.0f")
		row("  pop3s resumed %", "resume-pop3s", c, "resumed_pct", "%.0f")
		row("  pop3s front-end ms/session", "resume-pop3s", c, "fe_cpu_per_op_ms", "%.3f")
		floor_row("  floor: OpenSSL resumption ms", "floor-hs-" c "-resume",
		    "floor.c: server side, no I/O")
		row("  pop3s p50 ms", "resume-pop3s", c, "p50_ms", "%.1f")
		row("  STLS sessions/s", "resume-stls", c, "rate", "%.0f")
		row("  STLS resumed %", "resume-stls", c, "resumed_pct", "%.0f")
		row("  STLS front-end ms/session", "resume-stls", c, "fe_cpu_per_op_ms", "%.3f")
		section("latency: one client at a time, " M["lat_n"] " sessions (" ct ")")
		row("  pop3s connect->greeting p50 ms", "lat-pop3s", c, "greet_p50_ms", "%.2f")
		row("  pop3s connect->greeting p99 ms", "lat-pop3s", c, "greet_p99_ms", "%.2f")
		row("  pop3s connect->PASS +OK p50 ms", "lat-pop3s", c, "login_p50_ms", "%.2f")
		row("  pop3s connect->PASS +OK p99 ms", "lat-pop3s", c, "login_p99_ms", "%.2f")
		row("  STLS connect->greeting p50 ms", "lat-stls", c, "greet_p50_ms", "%.2f")
		row("  STLS connect->PASS +OK p50 ms", "lat-stls", c, "login_p50_ms", "%.2f")
	}
	section("baseline: Dovecot alone, plaintext")
	row("  sessions/s", "sess-plain", "-", "rate", "%.0f")
	row("  Dovecot ms/session", "sess-plain", "-", "be_cpu_per_op_ms", "%.3f")
	row("  connect->greeting p50 ms", "lat-plain", "-", "greet_p50_ms", "%.2f")
	row("  connect->PASS +OK p50 ms", "lat-plain", "-", "login_p50_ms", "%.2f")
	row("  minimal backend sessions/s", "sess-mini", "-", "rate", "%.0f")

	section("idle: " M["idle_n"] " logged-in pop3s sessions held (" c1 ")")
	row("  sessions held", "idle", c1, "held", "%d")
	row("  front-end RSS / N, KiB", "idle", c1, "fe_kib_per_session", "%.1f", "<=20.9")
	row("  (RSS with - RSS before) / N, KiB", "idle", c1, "fe_delta_kib_per_session", "%.1f")
	row("  front-end RSS total, MiB", "idle", c1, "fe_rss_mib", "%.1f")
	row("  front-end processes", "idle", c1, "fe_nproc", "%d")
	row("  Dovecot RSS / N, KiB", "idle", c1, "be_kib_per_session", "%.1f")

	print ""
	print "p/st, p/ng: popsd's value divided by stunnel's, nginx's (sessions/s and MiB/s: higher"
	print "is better; ms and KiB: lower is better). front-end = utime+stime of its whole process"
	print "tree from /proc. popsd+fix = the same popsd under tests/bench/popsd-fix.so (BENCH_FIX=1):"
	print "the OpenSSL settings now in src/libtls_shim.c, a no-op check (p/st, p/ng: plain popsd)."
	print "Minimal backend rows: loadgen's in-memory POP3 server instead of Dovecot, which isolates"
	print "the front-end; the Dovecot rows are bounded by Dovecot on these cores."
	if (fl_bulk != "" || L["floor-hs-rsa-t2"] != "" || L["floor-hs-ec-t2"] != "")
		print "floor rows (value in the first column): tests/bench/floor.c, what the kernel and " \
		    "OpenSSL\nalone cost on this machine, each the best of its runs at the start and at " \
		    "the end of the\nbench."
	print "targets (issue 14, ratios from this run): bulk front-end ms/MiB <= 1.1x the relay+AES"
	print "floor with 64 KiB I/O and <= 0.7x stunnel's; front-end ms per full handshake <= 1.25x"
	print "OpenSSL's handshake floor (no I/O, 2 tickets; \"TCP floor\": the same over loopback TCP,"
	print "shown, not a target); sessions/s >= 1.2x nginx's at 64 concurrent clients" \
	    (M["conc"] == 64 ? "" : " (this run: " M["conc"] ")") "; idle KiB per"
	print "session not above 20.9 (issue 14's before)."
	if (footnote)
		print "* some sessions of that run failed (see failed= and why_*= in the results file)"
}
