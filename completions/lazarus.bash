# bash completion for lazarus: the binary itself computes the candidates (the same
# grammar and cluster data the interactive shell completes from).
# Install: source this file from ~/.bashrc, or copy it to
# /usr/share/bash-completion/completions/lazarus (or ~/.local/share/bash-completion/completions/lazarus).

# Splits $1 into the array __lazarus_words as the shell reads it: whitespace separates
# words; backslash escapes, '...' and "..." keep spaces inside one word (unquoted here).
__lazarus_split() {
    local line="$1" word="" quote="" c i started=0
    __lazarus_words=()
    for ((i = 0; i < ${#line}; i++)); do
        c="${line:i:1}"
        if [[ -n "$quote" ]]; then
            if [[ "$c" == "$quote" ]]; then
                quote=""
            elif [[ "$c" == "\\" && "$quote" == '"' && $((i + 1)) -lt ${#line} ]]; then
                i=$((i + 1)); word+="${line:i:1}"
            else
                word+="$c"
            fi
        elif [[ "$c" == "\\" ]]; then
            i=$((i + 1)); word+="${line:i:1}"; started=1
        elif [[ "$c" == "'" || "$c" == '"' ]]; then
            quote="$c"; started=1
        elif [[ "$c" == [[:space:]] ]]; then
            if ((started)); then __lazarus_words+=("$word"); fi
            word=""; started=0
        else
            word+="$c"; started=1
        fi
    done
    __lazarus_words+=("$word")
}

_lazarus() {
    local line="${COMP_LINE:0:COMP_POINT}"
    local -a __lazarus_words
    __lazarus_split "$line"
    local cur="${__lazarus_words[${#__lazarus_words[@]}-1]}"
    local IFS=$'\n'
    local -a candidates
    candidates=($(command lazarus complete -- "${__lazarus_words[@]:1}" 2>/dev/null))
    # bash splits words at ':' (node:2, db:3) and '=' (--file=script) when they are in
    # COMP_WORDBREAKS; offer only the part after the last one.
    local breaks=""
    [[ "$COMP_WORDBREAKS" == *:* ]] && breaks+=":"
    [[ "$COMP_WORDBREAKS" == *=* ]] && breaks+="="
    if [[ -n "$breaks" && "$cur" == *["$breaks"]* ]]; then
        local prefix="${cur%"${cur##*["$breaks"]}"}"
        local i
        for i in "${!candidates[@]}"; do
            candidates[$i]="${candidates[$i]#"$prefix"}"
        done
    fi
    # Candidates come back plain: escape them the shell's way (a space as `\ `).
    COMPREPLY=()
    local c
    for c in "${candidates[@]}"; do
        COMPREPLY+=("$(printf '%q' "$c")")
    done
    # A directory stays open for the rest of its path.
    if [[ ${#COMPREPLY[@]} -eq 1 && "${COMPREPLY[0]}" == */ ]]; then
        compopt -o nospace 2>/dev/null
    fi
}
complete -F _lazarus lazarus
