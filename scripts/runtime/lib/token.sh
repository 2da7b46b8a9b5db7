# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# The shared token: where it is looked up, the mode-600 file the conductor reads it from
# (BAA_SHARED_TOKEN_FILE), and the refusal of a token file others can read. The token is
# never put in a plist: every command the conductor execs could read the daemon's
# environment (/proc/$PPID/environ, `ps eww`).

shared_token=""
shared_token_source=""
# install-mini.sh --secrets-env: the one env file to read when shared-token.txt is missing.
token_secrets_env=""

token_config_dir() {
  printf '%s/.config/baa-conductor\n' "$home_dir"
}

# First line of a token file, trailing whitespace removed.
read_token_file() {
  local line=""
  IFS= read -r line <"$1" || true
  line="${line%$'\r'}"
  line="${line%"${line##*[![:space:]]}"}"
  printf '%s' "$line"
}

# Value of KEY in a dotenv-style file. The file is parsed, never sourced.
read_env_file_value() {
  local file="$1" key="$2" line value="" found=1
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line%$'\r'}"
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line#export }"
    if [[ "$line" == "${key}="* ]]; then
      value="${line#"${key}"=}"
      if [[ "$value" == \"*\" || "$value" == \'*\' ]]; then
        value="${value:1:${#value}-2}"
      fi
      found=0
    fi
  done <"$file"
  printf '%s' "$value"
  return "$found"
}

# Sets shared_token and shared_token_source. Order:
#   --shared-token, --shared-token-file, $BAA_SHARED_TOKEN,
#   ~/.config/baa-conductor/shared-token.txt,
#   BAA_SHARED_TOKEN in ~/.config/baa-conductor/runtime-secrets.env,
#   BAA_SHARED_TOKEN in the legacy ~/.config/baa-conductor/control-api-worker.secrets.env.
resolve_shared_token() {
  local dir candidate
  dir="$(token_config_dir)"
  if [[ -n "$opt_shared_token" ]]; then
    shared_token="$opt_shared_token"
    shared_token_source="--shared-token"
  elif [[ -n "$shared_token_file" ]]; then
    [[ -r "$shared_token_file" ]] || usage_error "shared token file not readable: $shared_token_file"
    shared_token="$(read_token_file "$shared_token_file")"
    shared_token_source="$shared_token_file"
  elif [[ -n "${BAA_SHARED_TOKEN:-}" ]]; then
    shared_token="$BAA_SHARED_TOKEN"
    shared_token_source="BAA_SHARED_TOKEN"
  elif [[ -r "${dir}/shared-token.txt" ]]; then
    shared_token="$(read_token_file "${dir}/shared-token.txt")"
    shared_token_source="${dir}/shared-token.txt"
  else
    for candidate in ${token_secrets_env:+"$token_secrets_env"} "${dir}/runtime-secrets.env" "${dir}/control-api-worker.secrets.env"; do
      if [[ -r "$candidate" ]] && shared_token="$(read_env_file_value "$candidate" BAA_SHARED_TOKEN)"; then
        shared_token_source="$candidate"
        break
      fi
      shared_token=""
    done
  fi
}

# Fails unless a usable token was found.
require_shared_token() {
  resolve_shared_token
  if [[ -z "$shared_token" ]]; then
    usage_error "conductor needs a shared token: use --shared-token-file, BAA_SHARED_TOKEN, or $(token_config_dir)/shared-token.txt (runtime-secrets.env and the legacy control-api-worker.secrets.env are read too). To create one: mkdir -p '$(token_config_dir)' && (umask 077; openssl rand -hex 32 > '$(token_config_dir)/shared-token.txt')"
  fi
  if [[ "$shared_token" == "$BAA_RUNTIME_PLACEHOLDER_TOKEN" ]]; then
    usage_error "the shared token from ${shared_token_source} is still the placeholder ${BAA_RUNTIME_PLACEHOLDER_TOKEN}"
  fi
}

# The file the conductor reads its token from (BAA_SHARED_TOKEN_FILE in its plist): the
# --shared-token-file given, else ~/.config/baa-conductor/shared-token.txt.
conductor_token_file() {
  absolute_path "${shared_token_file:-$(token_config_dir)/shared-token.txt}"
}

# Refuses (exit 2) a token file that group or others may read or write: the token may
# already have leaked, and the conductor would refuse to start with it anyway. Called
# before anything is written, so a refused install changes nothing.
refuse_shared_token_file() {
  local file
  file="$(conductor_token_file)"
  if [[ -e "$file" ]] && ! file_is_private "$file"; then
    usage_error "token file ${file} has mode $(file_mode "$file"); it must be readable by its owner only. Run: chmod 600 '${file}' (and consider a new token: others could read this one), then install again"
  fi
}

# Makes conductor_token_file hold the resolved shared_token, mode 600: written atomically
# under umask 077 (in a mode-700 ~/.config/baa-conductor) when missing or different.
install_token_file() {
  local file dir tmp
  file="$(conductor_token_file)"
  dir="$(dirname -- "$file")"
  if [[ -f "$file" && "$(read_token_file "$file")" == "$shared_token" ]]; then
    return 0
  fi
  if [[ "$dry_run" == "1" ]]; then
    printf '# would write %s (mode 600) from %s\n' "$file" "$shared_token_source"
    return 0
  fi
  mkdir -p "$dir"
  if [[ "$dir" == "$(token_config_dir)" ]]; then
    chmod 700 "$dir"
  fi
  tmp="${file}.tmp.$$"
  (
    umask 077
    printf '%s\n' "$shared_token" >"$tmp"
  )
  mv -f "$tmp" "$file"
  runtime_log "wrote ${file} (mode 600) from ${shared_token_source}"
}

# The token to mask in diagnostics of an installed conductor: from the file its plist
# names (or, in a copy installed before token files, from the plist itself).
load_installed_token_for_masking() {
  local plist="$1" token_path
  [[ -z "$shared_token" ]] || return 0
  token_path="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_SHARED_TOKEN_FILE" "")"
  if [[ -n "$token_path" && -r "$token_path" ]]; then
    shared_token="$(read_token_file "$token_path")"
  else
    shared_token="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_SHARED_TOKEN" "")"
  fi
}
