<?php
// compat/php/symfony.php COMMAND FROM TO CC BCC SUBJECT BODY: one Email through
// Symfony Mailer's SendmailTransport (Debian's php-symfony-mailer 5.4), with
// COMMAND as its sendmail command ("... -bs": SMTP on the process's pipes;
// "... -t": message on stdin). Prints {"ok", "debug" (the SMTP dialogue in -bs
// mode), "error"} as JSON. With COMPAT_COUNT=N in the environment it sends N
// messages through the same transport (one -bs session), subjects "SUBJECT #i".
require '/usr/share/php/Symfony/Component/Mailer/autoload.php';
require_once '/usr/share/php/Symfony/Component/Mime/autoload.php';

use Symfony\Component\Mailer\Transport\SendmailTransport;
use Symfony\Component\Mime\Email;

[, $cmd, $from, $to, $cc, $bcc, $subject, $body] = $argv;
$t = new SendmailTransport($cmd);
$e = (new Email())->from($from)->to($to)->subject($subject)->text($body);
if ($cc !== '') {
    $e->cc($cc);
}
if ($bcc !== '') {
    $e->bcc($bcc);
}
$count = (int) (getenv('COMPAT_COUNT') ?: 1);
try {
    $debug = "";
    for ($i = 1; $i <= $count; $i++) {
        $m = clone $e;
        if ($count > 1) {
            $m->subject($subject . " #" . $i);
        }
        $sent = $t->send($m);
        $debug .= $sent->getDebug();
    }
    $out = ["ok" => true, "debug" => $debug, "error" => ""];
} catch (\Throwable $x) {
    $out = ["ok" => false, "debug" => method_exists($x, 'getDebug') ? $x->getDebug() : "",
            "error" => get_class($x) . ": " . $x->getMessage()];
}
unset($t); // closes the -bs session (QUIT) before we print
echo json_encode($out), "\n";
