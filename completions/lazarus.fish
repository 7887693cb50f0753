# fish completion for lazarus: the binary itself computes the candidates.
# Install: copy to ~/.config/fish/completions/lazarus.fish

function __lazarus_complete
    set -l words (commandline -opc)
    set -e words[1]
    # Quoted, so an empty current word is still passed (as "").
    set -l cur (commandline -ct)
    command lazarus complete -- $words "$cur" 2>/dev/null
end

complete -c lazarus -f -a '(__lazarus_complete)'
