# bash completion for lazarus: the binary itself computes the candidates (the same
# grammar and cluster data the interactive shell completes from).
# Install: source this file from ~/.bashrc, or copy it to
# /usr/share/bash-completion/completions/lazarus (or ~/.local/share/bash-completion/completions/lazarus).

_lazarus() {
    local line="${COMP_LINE:0:COMP_POINT}"
    local -a words
    # Split like the shell language: whitespace-separated; a trailing space starts a new word.
    read -r -a words <<< "$line"
    if [[ -z "$line" || "$line" =~ [[:space:]]$ ]]; then
        words+=("")
    fi
    local cur="${words[${#words[@]}-1]}"
    local IFS=$'\n'
    local -a candidates
    candidates=($(command lazarus complete -- "${words[@]:1}" 2>/dev/null))
    # bash splits words at ':' (node:2, db:3); offer only the part after the last one.
    if [[ "$cur" == *:* && "$COMP_WORDBREAKS" == *:* ]]; then
        local prefix="${cur%"${cur##*:}"}"
        local i
        for i in "${!candidates[@]}"; do
            candidates[$i]="${candidates[$i]#"$prefix"}"
        done
    fi
    COMPREPLY=("${candidates[@]}")
    # A directory stays open for the rest of its path.
    if [[ ${#COMPREPLY[@]} -eq 1 && "${COMPREPLY[0]}" == */ ]]; then
        compopt -o nospace 2>/dev/null
    fi
}
complete -F _lazarus lazarus
