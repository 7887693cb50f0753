# fish completion for lazarus: the binary itself computes the candidates.
# Install: copy to ~/.config/fish/completions/lazarus.fish

function __lazarus_complete
    set -l words (commandline -opc)
    set -e words[1]
    # The word being completed as typed, its quoting removed (`/mnt/old\ disk` is the
    # path `/mnt/old disk`); quoted below, so an empty word is still passed (as "").
    # Candidates come back plain: fish escapes them its own way.
    set -l cur (commandline -ct | string unescape)
    command lazarus complete -- $words "$cur" 2>/dev/null
end

complete -c lazarus -f -a '(__lazarus_complete)'
