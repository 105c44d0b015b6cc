# ossl-vault.bash: read many secrets in a bash script through one coprocess.
#
# One `ossl-vault serve --stdio` runs beside the script (docs/protocol.md), so
# twenty reads pay Python's start-up once; with an agent running
# ($OSSL_VAULT_AGENT) no key is unwrapped twice. Source it, don't run it:
#
#   source scripts/ossl-vault.bash
#   vault_start --vault /etc/ossl-vault        # ossl-vault's options [-- serve's options]
#   db_pass=$(vault_get db/password) || exit   # exact bytes on stdout
#   vault_get tls/key >/run/app/server.key
#   vault_read DB_PASS=db/password API=api/token || exit   # many at once, into variables
#   vault_stop
#
# Return codes are ossl-vault's exit codes (3 not found, 4 no usable identity,
# 5 integrity failure, ...), and errors print as the CLI prints them. The
# command run is the array OSSL_VAULT_CMD, default (ossl-vault).
# Functions and variables starting with _vault are internal.

_vault_fail() { # CODE MESSAGE [HINT]
    printf 'ossl-vault: error: %s\n' "$2" >&2
    [[ -z ${3-} ]] || printf 'hint: %s\n' "$3" >&2
    return "$1"
}

# vault_start [OSSL-VAULT OPTIONS...] [-- SERVE OPTIONS...]: start the coprocess,
# check that it answers. e.g. vault_start --vault DIR -- --passphrase-file FILE
vault_start() {
    [[ -z ${_VAULT_PID-} ]] || { _vault_fail 2 "vault_start: a coprocess already runs"; return; }
    local -a cmd=(ossl-vault) global=() serve=()
    [[ -z ${OSSL_VAULT_CMD[*]-} ]] || cmd=("${OSSL_VAULT_CMD[@]}")
    while (($#)); do
        if [[ $1 == -- ]]; then
            shift
            serve=("$@")
            break
        fi
        global+=("$1")
        shift
    done
    coproc _VAULT_CO { exec "${cmd[@]}" "${global[@]}" serve --stdio "${serve[@]}"; }
    _VAULT_PID=$_VAULT_CO_PID
    # our own copies of the pipes: coproc fds do not reach every subshell
    exec {_VAULT_IN}>&"${_VAULT_CO[1]}" {_VAULT_OUT}<&"${_VAULT_CO[0]}"
    eval "exec ${_VAULT_CO[1]}>&- ${_VAULT_CO[0]}<&-"
    _VAULT_N=0
    local rc=0
    if _vault_send "{\"id\":\"$BASHPID.0\",\"op\":\"ping\"}"; then
        _vault_recv || rc=$?
    else
        rc=$?
    fi
    ((rc == 0)) || vault_stop 2>/dev/null
    return "$rc"
}

# vault_stop: end of input for the coprocess; wait for it to finish.
vault_stop() {
    [[ -n ${_VAULT_PID-} ]] || return 0
    exec {_VAULT_IN}>&- {_VAULT_OUT}<&-
    wait "$_VAULT_PID" 2>/dev/null
    local rc=$?
    unset _VAULT_PID _VAULT_IN _VAULT_OUT
    return "$rc"
}

# Internal helpers set variables rather than print: no subshell, no fork.
_vault_request() { # OP NAME [VERSION]: send it; _VAULT_ID is its id
    local name=$2
    [[ $name != *[[:cntrl:]]* ]] || { _vault_fail 2 "invalid secret name"; return; }
    name=${name//\\/\\\\}
    _VAULT_ID=$BASHPID.$((_VAULT_N += 1))
    _vault_send "{\"id\":\"$_VAULT_ID\",\"op\":\"$1\",\"name\":\"${name//\"/\\\"}\"${3:+,\"version\":$3}}"
}

_vault_send() {
    [[ -n ${_VAULT_PID-} ]] || { _vault_fail 2 "no coprocess: call vault_start first"; return; }
    printf '%s\n' "$1" >&"$_VAULT_IN" || _vault_fail 1 "the ossl-vault coprocess is gone"
}

# _vault_recv: read one reply into _VAULT_RID and _VAULT_B64 (the value, if any);
# an error reply is printed as the CLI prints it, and its code returned.
_vault_recv() {
    local line
    _VAULT_RID="" _VAULT_B64=""
    IFS= read -r line <&"$_VAULT_OUT" || { _vault_fail 1 "the ossl-vault coprocess is gone"; return; }
    local value='^\{"id":"([^"]*)","result":\{"value_b64":"([A-Za-z0-9+/=]*)"\}\}$'
    local ok='^\{"id":"([^"]*)","result":'
    local string='"(([^"\\]|\\.)*)"'
    local bad="^\\{\"id\":(\"([^\"]*)\"|null),\"error\":\\{\"code\":([0-9]+),\"message\":$string"
    if [[ $line =~ $value || $line =~ $ok ]]; then
        _VAULT_RID=${BASH_REMATCH[1]} _VAULT_B64=${BASH_REMATCH[2]-}
        return 0
    fi
    if [[ $line =~ $bad ]]; then
        local code=${BASH_REMATCH[3]} message=${BASH_REMATCH[4]} hint=""
        _VAULT_RID=${BASH_REMATCH[2]}
        [[ ! $line =~ ,\"hint\":$string\}\}$ ]] || hint=${BASH_REMATCH[1]}
        message=${message//\\\"/\"} hint=${hint//\\\"/\"}
        _vault_fail "$code" "${message//\\\\/\\}" "${hint//\\\\/\\}"
        return
    fi
    _vault_fail 1 "unexpected reply from ossl-vault serve"
}

# vault_get NAME [VERSION]: print the value of NAME, exactly the stored bytes.
vault_get() {
    [[ -z ${2-} || $2 =~ ^[1-9][0-9]{0,9}$ ]] || { _vault_fail 2 "invalid version '$2'"; return; }
    _vault_request get "$1" "${2-}" || return
    local id=$_VAULT_ID
    _vault_recv || return
    [[ $_VAULT_RID == "$id" ]] || { _vault_fail 1 "reply for another request"; return; }
    base64 -d <<<"$_VAULT_B64"
}

# _vault_b64 B64 VAR: decode into VAR in bash itself, with no fork (a base64 process
# per value would cost more than the read); for short values, which secrets are.
declare -gA _VAULT_B64MAP=()
_vault_b64_alphabet=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/
for ((_vault_i = 0; _vault_i < 64; _vault_i++)); do
    _VAULT_B64MAP[${_vault_b64_alphabet:_vault_i:1}]=$_vault_i
done
unset _vault_i _vault_b64_alphabet
_vault_b64() {
    local s=$1 esc="" b q i n=${#1}
    for ((i = 0; i < n; i += 4)); do
        q=$(((_VAULT_B64MAP[${s:i:1}] << 18) | (_VAULT_B64MAP[${s:i+1:1}] << 12)))
        if [[ ${s:i+2:1} == = ]]; then
            printf -v b '\\x%02x' $((q >> 16))
        elif [[ ${s:i+3:1} == = ]]; then
            q=$((q | _VAULT_B64MAP[${s:i+2:1}] << 6))
            printf -v b '\\x%02x\\x%02x' $((q >> 16)) $(((q >> 8) & 255))
        else
            q=$((q | _VAULT_B64MAP[${s:i+2:1}] << 6 | _VAULT_B64MAP[${s:i+3:1}]))
            printf -v b '\\x%02x\\x%02x\\x%02x' $((q >> 16)) $(((q >> 8) & 255)) $((q & 255))
        fi
        esc+=$b
    done
    printf -v "$2" '%b' "$esc"
}

# vault_read VAR=NAME...: set each VAR to the value of NAME, the requests in flight
# together (the coprocess decrypts them in parallel). A value holding a NUL byte,
# which a bash variable cannot carry, is refused (2). Returns the first error code.
vault_read() {
    local LC_ALL=C spec var name id reply rc=0 size pad value i sent
    local -a batch=()
    local -A var_of=()
    for spec; do
        var=${spec%%=*} name=${spec#*=}
        [[ $spec == *=* && $var =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] ||
            { _vault_fail 2 "vault_read: expected VAR=NAME, not '$spec'"; return; }
        batch+=("$var" "$name")
    done
    while ((${#batch[@]})); do # 32 requests at a time: writer and reader never both block
        local -a chunk=("${batch[@]:0:64}")
        batch=("${batch[@]:64}")
        var_of=() sent=0
        for ((i = 0; i < ${#chunk[@]}; i += 2)); do
            _vault_request get "${chunk[i + 1]}" || return
            var_of[$_VAULT_ID]=${chunk[i]}:${chunk[i + 1]}
            sent=$((sent + 1))
        done
        for ((i = 0; i < sent; i++)); do
            _vault_recv || {
                id=$?
                ((rc)) || rc=$id
                continue
            }
            var=${var_of[$_VAULT_RID]%%:*} name=${var_of[$_VAULT_RID]#*:} reply=$_VAULT_B64
            pad=${reply##*[!=]} size=$((${#reply} * 3 / 4 - ${#pad}))
            if ((${#reply} <= 512)); then
                _vault_b64 "$reply" value
            else # a long value: one base64 process beats a bash loop
                { value=$(base64 -d <<<"$reply" && printf x); } 2>/dev/null
                value=${value%x}
            fi
            if ((${#value} != size)); then
                _vault_fail 2 "value of '$name' holds a NUL byte, which $var cannot carry"
                ((rc)) || rc=2
                continue
            fi
            printf -v "$var" '%s' "$value"
        done
    done
    return "$rc"
}
