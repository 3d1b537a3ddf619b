#!/bin/sh
# mkcert.sh [-r] [-f] [-o] [-n NAME]... [-c NAME]... [DIR] — a development
# CA and a "localhost" server certificate signed by it, for trying popsd
# and for its tests.
#
#   -r       RSA-2048 keys (default: ECDSA P-256)
#   -f       make new ones even if valid ones are present
#   -n NAME  also a server certificate for the DNS name NAME (to try SNI):
#            DIR/NAME.pem, DIR/NAME.key
#   -c NAME  also a client certificate with CN=NAME (tls-client-cert):
#            DIR/client-NAME.pem, DIR/client-NAME.key
#   -o       also a fresh OCSP response ("good", signed by the CA, valid 7
#            days) for each server certificate: DIR/cert.ocsp, DIR/NAME.ocsp
#            (ocsp-staple)
#   DIR      where to put them (default: certs/dev beside this script)
#
# Writes DIR/ca.pem, DIR/ca.key (the CA), DIR/cert.pem, DIR/key.pem (the
# server: CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1). Keys are
# mode 0600: popsd refuses a key that group or others can read.
# Idempotent: files that are present, of the asked key type, matching,
# issued by the CA in DIR and valid for at least another day are reused
# (OCSP responses are always made anew).
set -eu

usage() {
	echo "usage: $0 [-r] [-f] [-o] [-n NAME]... [-c NAME]... [DIR]" >&2
	exit 2
}

keytype=ec
force=no
ocsp=no
names=""
clients=""
while getopts rfon:c: opt; do
	case $opt in
	r) keytype=rsa ;;
	f) force=yes ;;
	o) ocsp=yes ;;
	n|c)
		# A name becomes a file name: letters, digits, dots, dashes.
		case $OPTARG in
		''|.*|*[!A-Za-z0-9.-]*) echo "mkcert: bad name \"$OPTARG\"" >&2; exit 2 ;;
		esac
		if [ "$opt" = n ]; then names="$names $OPTARG"; else clients="$clients $OPTARG"; fi
		;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
dir=${1:-$(dirname "$0")/dev}

umask 077
if [ ! -d "$dir" ]; then
	mkdir -p "$dir"
	chmod 755 "$dir"	# ca.pem and cert.pem are for everyone
fi
ca=$dir/ca.pem cakey=$dir/ca.key cert=$dir/cert.pem key=$dir/key.pem

pubkey() { openssl pkey -in "$1" -pubout 2>/dev/null; }
certkey() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null; }

# leaf_usable CERT KEY: a certificate of the asked key type, matching its
# key, issued by the CA in DIR and valid for at least another day?
leaf_usable() {
	[ -s "$1" ] && [ -s "$2" ] || return 1
	case $keytype in
	ec)  want='id-ecPublicKey' ;;
	rsa) want='rsaEncryption' ;;
	esac
	openssl x509 -in "$1" -noout -text 2>/dev/null | grep -q "$want" || return 1
	[ "$(pubkey "$2")" = "$(certkey "$1")" ] || return 1
	openssl verify -CAfile "$ca" "$1" >/dev/null 2>&1 || return 1
	openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1 || return 1
}

# usable: are the four files there, of the asked type, consistent and fresh?
usable() {
	for f in "$ca" "$cakey"; do
		[ -s "$f" ] || return 1
	done
	[ "$(pubkey "$cakey")" = "$(certkey "$ca")" ] || return 1
	openssl x509 -in "$ca" -noout -checkend 86400 >/dev/null 2>&1 || return 1
	leaf_usable "$cert" "$key"
}

newkey() {
	case $keytype in
	ec)  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null ;;
	rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null ;;
	esac
	chmod 600 "$1"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mkcert.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# issue NAME-OF-FILES SUBJECT EXTFILE: a key and a certificate signed by
# the CA, into DIR/NAME-OF-FILES.pem and .key (keys first, as below).
issue() {
	newkey "$tmp/$1.key"
	openssl req -new -key "$tmp/$1.key" -subj "$2" -out "$tmp/$1.req" 2>/dev/null
	openssl x509 -req -in "$tmp/$1.req" -CA "$ca" -CAkey "$cakey" \
		-CAcreateserial -CAserial "$tmp/ca.srl" -sha256 -days 825 \
		-extfile "$3" -out "$tmp/$1.pem" 2>/dev/null
	openssl verify -CAfile "$ca" "$tmp/$1.pem" >/dev/null
	chmod 644 "$tmp/$1.pem"
	chmod 600 "$tmp/$1.key"
	mv -f "$tmp/$1.key" "$dir/$1.key"
	mv -f "$tmp/$1.pem" "$dir/$1.pem"
}

# extras: what -n, -c and -o asked for, with the CA now in place.
extras() {
	for n in $names; do
		if [ "$force" = yes ] || ! leaf_usable "$dir/$n.pem" "$dir/$n.key"; then
			cat >"$tmp/ext-$n.cnf" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:$n
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
			issue "$n" "/O=popsd development/CN=$n" "$tmp/ext-$n.cnf"
			echo "mkcert: made server certificate $dir/$n.pem ($n)"
		fi
	done
	for n in $clients; do
		if [ "$force" = yes ] || ! leaf_usable "$dir/client-$n.pem" "$dir/client-$n.key"; then
			cat >"$tmp/ext-client.cnf" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
			issue "client-$n" "/O=popsd development/CN=$n" "$tmp/ext-client.cnf"
			echo "mkcert: made client certificate $dir/client-$n.pem ($n)"
		fi
	done
	[ "$ocsp" = yes ] || return 0
	for base in cert $names; do
		ocsp_response "$dir/$base.pem" "$dir/$base.ocsp"
	done
}

# ocsp_response CERT OUT: a "good" OCSP response for CERT, signed by the
# CA itself (RFC 6960 §4.2.2.2 allows the issuer), valid for 7 days.
ocsp_response() {
	serial=$(openssl x509 -in "$1" -noout -serial | cut -d= -f2)
	end=$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)
	subject=$(openssl x509 -in "$1" -noout -subject -nameopt compat | sed 's/^subject=//')
	printf 'V\t%s\t\t%s\tunknown\t%s\n' "$(date -u -d "$end" +%y%m%d%H%M%SZ)" \
		"$serial" "$subject" >"$tmp/index.txt"
	openssl ocsp -issuer "$ca" -cert "$1" -no_nonce -reqout "$tmp/ocsp.req" 2>/dev/null
	openssl ocsp -index "$tmp/index.txt" -rsigner "$ca" -rkey "$cakey" -CA "$ca" \
		-reqin "$tmp/ocsp.req" -respout "$tmp/ocsp.der" -ndays 7 >/dev/null 2>&1
	chmod 644 "$tmp/ocsp.der"
	mv -f "$tmp/ocsp.der" "$2"
}

if [ "$force" = no ] && usable; then
	chmod 600 "$cakey" "$key"	# a copied tree may have lost the modes
	extras
	exit 0
fi

newkey "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days 3650 \
	-subj "/O=popsd development/CN=popsd development CA" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" \
	-addext "subjectKeyIdentifier=hash" \
	-out "$tmp/ca.pem" 2>/dev/null

newkey "$tmp/key.pem"
openssl req -new -key "$tmp/key.pem" -subj "/O=popsd development/CN=localhost" \
	-out "$tmp/req.pem" 2>/dev/null
cat >"$tmp/ext.cnf" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl x509 -req -in "$tmp/req.pem" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
	-CAcreateserial -sha256 -days 825 -extfile "$tmp/ext.cnf" \
	-out "$tmp/cert.pem" 2>/dev/null
openssl verify -CAfile "$tmp/ca.pem" "$tmp/cert.pem" >/dev/null

chmod 644 "$tmp/ca.pem" "$tmp/cert.pem"
chmod 600 "$tmp/ca.key" "$tmp/key.pem"
# Keys first: a reader never sees a new certificate with an old key.
for f in ca.key key.pem ca.pem cert.pem; do
	mv -f "$tmp/$f" "$dir/$f"
done
echo "mkcert: made $keytype CA $ca and server certificate $cert (localhost)"
extras
